#!/usr/bin/env python3
"""Where one QEMU's memory goes: its PSS from /proc/PID/smaps by kind.

usage: qemu_pss.py PID
Prints "<kind> <pss_kib>" lines (bench/compare.sh records them for the
report's table of an idle jevm container's memory):
  tcg_code     anonymous executable mappings: TCG's translated-code buffer
  tcg_tlb      the largest other anonymous mapping (a region each clone
               gets with its first translations; by size, TCG's soft-MMU TLBs)
  guest_memory the template's memory file, mapped private: the guest's RAM
  qemu_heap    the other anonymous mappings: heap, malloc arenas, stacks
  qemu_files   QEMU's binary, libraries and other files
"""
import re, sys

maps = []  # [name, perms, pss_kib]
with open(f'/proc/{sys.argv[1]}/smaps') as f:
    for line in f:
        m = re.match(r'^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$', line)
        if m:
            maps.append([m.group(2), m.group(1), 0])
        elif line.startswith('Pss:'):
            maps[-1][2] += int(line.split()[1])
kinds = {'tcg_code': 0, 'tcg_tlb': 0, 'guest_memory': 0, 'qemu_heap': 0, 'qemu_files': 0}
unnamed = []  # anonymous, not executable, without a [name]
for name, perms, pss in maps:
    if name.endswith('/memory'):
        kinds['guest_memory'] += pss
    elif name and not name.startswith('['):
        kinds['qemu_files'] += pss
    elif not name and 'x' in perms:
        kinds['tcg_code'] += pss
    elif not name:
        unnamed.append(pss)
    else:
        kinds['qemu_heap'] += pss  # [heap], [stack], ...
unnamed.sort()
if unnamed:
    kinds['tcg_tlb'] = unnamed.pop()
kinds['qemu_heap'] += sum(unnamed)
for k, v in kinds.items():
    print(k, v)
