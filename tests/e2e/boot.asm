; A boot sector for the e2e KVM test: writes one sector of a known pattern
; to LBA 2048 (1 MiB) of the boot disk through the BIOS.
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
; Then, every half second: the capacity the first virtio disk's own
; configuration shows (legacy I/O BAR0 + 20, in 512-byte sectors) and how
; many virtio disks are on PCI bus 0, written to LBA 2049, so the host sees
; what the guest sees after a grow or a hotplug. The instance is stopped
; from outside. It also ejects a PCI slot Ganeti asks to unplug (what an
; operating system does), so that a hot-remove completes.
report:
    xor bp, bp              ; virtio disks seen
    mov dword [0x8200], 0x52504143  ; "CAPR"
    mov dword [0x8204], 0
    mov dword [0x8208], 0
    mov dword [0x820c], 0
    mov ebx, 0x80000000     ; bus 0, device 0, function 0, register 0
scan:
    mov eax, ebx
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    in eax, dx
    cmp eax, 0x10011af4     ; virtio-blk, transitional
    je disk
    cmp eax, 0x10421af4     ; virtio-blk, modern only
    jne next
disk:
    inc bp
    cmp bp, 1
    jne next
    mov eax, ebx
    or al, 0x10             ; BAR0
    mov dx, 0xcf8
    out dx, eax
    mov dx, 0xcfc
    in eax, dx
    test al, 1              ; an I/O BAR: the legacy interface
    jz next
    and ax, 0xfffc
    add ax, 20              ; device configuration: capacity first
    mov dx, ax
    in eax, dx
    mov [0x8208], eax
    add dx, 4
    in eax, dx
    mov [0x820c], eax
next:
    add ebx, 0x800
    cmp ebx, 0x80010000
    jb scan
    mov [0x8204], bp
    mov dword [packet + 4], 0x8200
    mov dword [packet + 8], 2049
    mov si, packet
    mov ah, 0x43
    mov al, 0
    mov dl, [drive]
    int 0x13
    mov dx, 0xae04          ; PIIX4 ACPI PCI hotplug: slots to remove
    in eax, dx
    test eax, eax
    jz pause
    mov dx, 0xae08          ; eject them, as an OS's ACPI _EJ0 does
    out dx, eax
pause:
    mov ah, 0x86            ; wait 0.5 s
    mov cx, 0x0007
    mov dx, 0xa120
    int 0x15
    jmp report
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
