; A boot sector for the e2e KVM test: writes one sector of a known pattern
; to LBA 2048 (1 MiB) of the boot disk through the BIOS, then powers off.
bits 16
org 0x7c00
start:
    cli
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    mov [drive], dl
    mov di, 0x8000          ; the sector to write: the marker, then 0xA5
    mov cx, 512
    mov al, 0xA5
    rep stosb
    mov si, marker
    mov di, 0x8000
    mov cx, marker_end - marker
    rep movsb
    mov si, packet          ; int 13h extended write
    mov ah, 0x43
    mov al, 0
    mov dl, [drive]
    int 0x13
    jc halt
    mov dx, 0xb004          ; ACPI S5 on i440fx (SeaBIOS's PM base)
    mov ax, 0x2000
    out dx, ax
    mov dx, 0x604           ; and on q35
    out dx, ax
halt:
    hlt
    jmp halt
drive: db 0
packet: db 0x10, 0
        dw 1                ; sectors
        dw 0x8000, 0        ; buffer offset, segment
        dq 2048             ; LBA
marker: db "GANETI-GLUSTER-KVM-OK"
marker_end:
times 510 - ($ - $$) db 0
dw 0xaa55
