#!/usr/bin/env python3
"""Sum PSS (and count processes) of an engine's process set.

usage: pss.py [--pids] MATCH [PID...]
The set is: the given PIDs, every process whose command line contains
MATCH (the engine's private temp dir: shims, conmon, QEMU, runsc sandboxes
name it in their arguments), and all their descendants. Prints
"<pss_kib> <nprocs>", or with --pids the PIDs of the set, one a line.
"""
import os, sys

args = sys.argv[1:]
list_pids = args[:1] == ['--pids']
if list_pids:
    args = args[1:]
match = args[0].encode()
seeds = {int(p) for p in args[1:] if p}
me = os.getpid()
children, cmd = {}, {}
for d in os.listdir('/proc'):
    if not d.isdigit():
        continue
    pid = int(d)
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            st = f.read()
        ppid = int(st[st.rindex(b')') + 2:].split()[1])
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            cmd[pid] = f.read()
    except (OSError, ValueError):
        continue
    children.setdefault(ppid, []).append(pid)
for pid, c in cmd.items():
    if match and match in c and pid != me and b'pss.py' not in c:
        seeds.add(pid)
todo, seen = list(seeds), set()
while todo:
    p = todo.pop()
    if p in seen:
        continue
    seen.add(p)
    todo.extend(children.get(p, []))
if list_pids:
    print('\n'.join(str(p) for p in sorted(seen) if p != me))
    sys.exit(0)
total = 0
n = 0
for p in seen:
    try:
        with open(f'/proc/{p}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Pss:'):
                    total += int(line.split()[1])
                    n += 1
                    break
    except OSError:
        pass
print(total, n)
