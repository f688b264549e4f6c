; A boot sector that writes a verifiable stream, to prove point-in-time
; snapshots of a running VM's disk (tests/e2e/generations.py reads it back).
; Forever, for generation g = 1, 2, 3, ...: for block b = N-1 down to 0, write
; 64 sectors (32 KiB) at LBA 2048 + 64*b, each sector carrying "GENW", g, b,
; its index in the block (u32 each, little-endian), then a fixed fill. After
; block 0, a status sector at LBA 1024: "GENS", the generation just completed.
; A copy of the disk taken at one instant thus holds g in blocks N-1..k and
; g-1 in blocks k-1..0; anything else is torn. Writes go through int 13h
; AH=43h, as boot.asm's do; an error stops the guest (the status stalls).
bits 16
org 0x7c00

BLOCKS      equ 256         ; 8 MiB of blocks...
SECTORS     equ 64          ; ...of 64 sectors (32 KiB) each
FIRST_LBA   equ 2048        ; from 1 MiB
STATUS_LBA  equ 1024        ; the status sector, at 512 KiB
BUFFER_SEG  equ 0x1000      ; the block buffer: 0x10000..0x17fff
STATUS_BUF  equ 0x7e00      ; the status sector's buffer, just after us

start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    sti
    mov [drive], dl
    ; The status buffer: "GENS", g, zeros.
    mov es, ax
    mov di, STATUS_BUF
    mov cx, 256
    rep stosw
    mov dword [STATUS_BUF], "GENS"
    ; The block buffer: the fixed fill, then in every sector its magic and
    ; index, once; per block only g and b change.
    mov ax, BUFFER_SEG
    mov es, ax
    xor di, di
    mov cx, SECTORS * 512 / 2
    mov ax, 0xa5a5
    rep stosw
    xor di, di
    xor eax, eax
header:
    mov dword [es:di], "GENW"
    mov [es:di + 12], eax   ; the sector's index in the block
    add di, 512
    inc eax
    cmp eax, SECTORS
    jb header

generation:
    inc dword [gen]
    mov dword [block], BLOCKS - 1
write_block:
    ; Stamp g and b into every sector (state is kept in memory, not in
    ; registers, so nothing depends on what the BIOS preserves).
    mov ax, BUFFER_SEG
    mov es, ax
    mov eax, [gen]
    mov edx, [block]
    xor di, di
    mov cx, SECTORS
stamp:
    mov [es:di + 4], eax
    mov [es:di + 8], edx
    add di, 512
    loop stamp
    shl edx, 6              ; LBA = FIRST_LBA + 64 * b
    add edx, FIRST_LBA
    mov [block_packet + 8], edx
    mov word [block_packet + 2], SECTORS  ; the BIOS writes back the count done
    mov si, block_packet
    call write
    dec dword [block]
    jns write_block         ; down to block 0, then the generation is whole
    mov eax, [gen]
    mov [STATUS_BUF + 4], eax
    mov word [status_packet + 2], 1
    mov si, status_packet
    call write
    jmp generation

write:                      ; int 13h extended write of the packet at DS:SI
    mov ah, 0x43
    mov al, 0
    mov dl, [drive]
    int 0x13
    jc halt
    ret
halt:
    hlt
    jmp halt

drive: db 0
align 4
gen:   dd 0
block: dd 0
block_packet:
    db 0x10, 0
    dw SECTORS              ; sectors
    dw 0, BUFFER_SEG        ; buffer offset, segment
    dq FIRST_LBA            ; LBA, set per block
status_packet:
    db 0x10, 0
    dw 1
    dw STATUS_BUF, 0
    dq STATUS_LBA
times 510 - ($ - $$) db 0
dw 0xaa55
