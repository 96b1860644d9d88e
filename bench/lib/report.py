#!/usr/bin/env python3
"""Turn bench/compare.sh's raw CSV into summary.csv, gnuplot charts and the
"Side by side (issue 7)" section of docs/BENCHMARKS.md.

usage: report.py RESULTS_DIR REPO_ROOT NO_DOC RUNS PAR PAR_REPS CAP_MAX CAP_SECONDS CLI_VERSION
"""
import csv, datetime, os, platform, re, shutil, subprocess, sys

res, root, no_doc = sys.argv[1], sys.argv[2], sys.argv[3] == '1'
RUNS, PAR, PAR_REPS, CAP_MAX, CAP_SECONDS = sys.argv[4:9]
cli = sys.argv[9] if len(sys.argv) > 9 else ''

ENGINES = ['jevm', 'runc', 'runsc', 'podman']
LABEL = {'jevm': 'jevm (QEMU clone)', 'runc': 'dockerd + runc',
         'runsc': 'dockerd + runsc (gVisor)', 'podman': 'podman (API service, runc)'}
SHORT = {'jevm': 'jevm', 'runc': 'dockerd+runc', 'runsc': 'dockerd+runsc', 'podman': 'podman'}
par = f'parallel{PAR}'
LAT = [('run_rm', '`docker run --rm busybox true`'), ('create', '`docker create`'),
       ('start', '`docker start`'), ('stop', '`docker stop` (trapping shell)'),
       ('rm', '`docker rm`'), (par, f'{PAR} × `docker run -d` in parallel, until all running'),
       ('build_cold', '`docker build`, 6 steps with 2 RUN, no cache'),
       ('build_cached', '`docker build`, nothing changed (cache)'),
       ('build_changed', '`docker build`, one copied file changed'),
       ('push50', '`docker push` of a 50 MiB image'), ('pull50', '`docker pull` of a 50 MiB image'),
       ('compose_up', '`docker compose up -d --wait`: web (healthy), worker, sidecar in web\'s namespace'),
       ('compose_down', '`docker compose down -v` of that application')]

raw = {}
with open(os.path.join(res, 'raw.csv')) as f:
    for r in csv.DictReader(f):
        raw.setdefault((r['engine'], r['metric']), []).append(float(r['value']))
notes = {}
with open(os.path.join(res, 'notes.txt')) as f:
    for line in f:
        e, _, msg = line.rstrip('\n').partition('|')
        notes.setdefault(e, []).append(msg)


def pct(v, p):
    v = sorted(v)
    i = max(1, int((len(v) * p + 99) // 100))
    return v[i - 1]


def stats(e, m):
    v = raw.get((e, m))
    if not v:
        return None
    return len(v), min(v), pct(v, 50), pct(v, 95)


ran = [e for e in ENGINES if any(k[0] == e for k in raw)]
unavail = {e: [n for n in notes.get(e, []) if n.startswith('UNAVAILABLE')] for e in ENGINES}

# summary.csv
rows = []
for e in ENGINES:
    for m, _ in LAT + [('clone_restore', ''), ('clone_to_entrypoint', ''), ('cap_start_latency', '')]:
        s = stats(e, m)
        if s:
            rows.append([e, m, s[0], round(s[1]), round(s[2]), round(s[3]), 'ms'])
    for m in ('pss_baseline_kib', 'pss_per_container_n10', 'pss_per_container_n50', 'pss_total_kib_n10', 'pss_total_kib_n50'):
        s = stats(e, m)
        if s:
            rows.append([e, m, 1, s[1], s[1], s[1], 'KiB'])
    s = stats(e, 'capacity')
    if s:
        rows.append([e, 'capacity', 1, s[1], s[1], s[1], 'containers'])
with open(os.path.join(res, 'summary.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['engine', 'metric', 'n', 'min', 'median', 'p95', 'unit'])
    w.writerows(rows)


def med(e, m):
    s = stats(e, m)
    return s[2] if s else None


def one(e, m):
    v = raw.get((e, m))
    return v[0] if v else None


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return 'n/a'
    return f'{a / b:.2f}×'


# charts
def gnuplot(script):
    try:
        subprocess.run(['gnuplot'], input=script, text=True, check=True, capture_output=True)
        return True
    except Exception as ex:  # gnuplot missing or failed: report, not crash
        print('gnuplot failed:', ex, file=sys.stderr)
        return False


charts = []
if ran:
    cols = [e for e in ran]
    dat = os.path.join(res, 'latency.dat')
    with open(dat, 'w') as f:
        f.write('metric ' + ' '.join(SHORT[e] for e in cols) + '\n')
        for m, _ in LAT[:5]:
            f.write(m + ' ' + ' '.join(str(med(e, m) or 0) for e in cols) + '\n')
    plots = ', '.join(f"'{dat}' using {i + 2}:xtic(1)" for i in range(len(cols)))
    common = ("set terminal pngcairo size 900,500 font 'sans,10'\nset style data histograms\n"
              "set style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
              "set grid ytics\nset key top right\nset yrange [0:*]\nset termoption noenhanced\n"
              "set key autotitle columnheader\n")
    if gnuplot(common + f"set output '{res}/latency.png'\nset title 'Median latency per operation (ms, lower is better)'\n"
               f"set ylabel 'ms'\nplot {plots}\n"):
        charts.append('latency.png')
    dat2 = os.path.join(res, 'parallel.dat')
    with open(dat2, 'w') as f:
        for e in cols:
            s = stats(e, par)
            if s:
                f.write(f'"{SHORT[e]}" {s[2]} {s[1]} {s[3]}\n')
    if os.path.getsize(dat2) and gnuplot(
            "set terminal pngcairo size 700,450 font 'sans,10'\nset style fill solid 0.8 border -1\nset boxwidth 0.6\n"
            f"set grid ytics\nset yrange [0:*]\nset termoption noenhanced\nset output '{res}/parallel.png'\n"
            f"set title '{PAR} containers started in parallel: until all running (ms; median, bars min..p95)'\n"
            f"plot '{dat2}' using 0:2:xtic(1) with boxes notitle, '' using 0:2:3:4 with yerrorbars lc rgb 'black' notitle\n"):
        charts.append('parallel.png')
    dat3 = os.path.join(res, 'memory.dat')
    with open(dat3, 'w') as f:
        f.write('engine N=10 N=50\n')
        for e in cols:
            a, b = one(e, 'pss_per_container_n10'), one(e, 'pss_per_container_n50')
            f.write(f'"{SHORT[e]}" {(a or 0) / 1024:.1f} {(b or 0) / 1024:.1f}\n')
    if gnuplot(common + f"set output '{res}/memory.png'\nset title 'Idle PSS per container, whole engine, minus idle baseline (MiB)'\n"
               f"set ylabel 'MiB'\nplot '{dat3}' using 2:xtic(1), '' using 3\n"):
        charts.append('memory.png')
    dat4 = os.path.join(res, 'capacity.dat')
    with open(dat4, 'w') as f:
        for e in cols:
            v = raw.get((e, 'cap_start_latency'), [])
            f.write(f'# {SHORT[e]}\n' + ''.join(f'{i + 1} {x}\n' for i, x in enumerate(v)) + '\n\n')
    plots4 = ', '.join(f"'{dat4}' index {i} using 1:2 with linespoints title '{SHORT[e]}'" for i, e in enumerate(cols))
    if gnuplot("set terminal pngcairo size 900,500 font 'sans,10'\nset grid\nset key top left\nset termoption noenhanced\n"
               f"set output '{res}/capacity.png'\nset title 'docker run -d latency vs. containers already running (ms)'\n"
               f"set xlabel 'containers running'\nset ylabel 'ms'\nset yrange [0:*]\nplot {plots4}\n"):
        charts.append('capacity.png')

# markdown
def cpu_model():
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return 'unknown'


mem_gib = 0
with open('/proc/meminfo') as f:
    for line in f:
        if line.startswith('MemTotal'):
            mem_gib = int(line.split()[1]) / 1048576
load = open('/proc/loadavg').read().split()[:3]
total_s = open(os.path.join(res, 'total_seconds.txt')).read().strip()
accel = open(os.path.join(res, 'jevm-accel.txt')).read().strip() if os.path.exists(os.path.join(res, 'jevm-accel.txt')) else 'n/a'
tmpl = open(os.path.join(res, 'jevm-template.txt')).read().strip() if os.path.exists(os.path.join(res, 'jevm-template.txt')) else 'n/a'
m_t = re.match(r'^([0-9.]+)(ms|s)$', tmpl)
if m_t:
    tmpl = f'{float(m_t.group(1)) / (1000 if m_t.group(2) == "ms" else 1):.1f} s'
versions = open(os.path.join(res, 'versions.txt')).read().strip().splitlines() if os.path.exists(os.path.join(res, 'versions.txt')) else []

L = []
L.append('## Side by side (issue 7): `make bench` (`bench/compare.sh`)')
L.append('')
L.append('What it does: installs what is missing (Debian `docker.io`, `podman`, `runsc`, `gnuplot-nox`), '
         'starts one local registry with the offline test images, then one engine at a time on a private '
         'temp dir, each for its part of the run only: dockerd with runc; dockerd with runsc as default '
         'runtime (registered through dockerd `--config-file` with `runtimeArgs: ["--network=host"]`, see '
         '`/work/shared/design/reference-engines.md`); `podman system service` (runc, cgroupfs, CNI); jevmd. '
         'Each engine pulls `127.0.0.1:PORT/busybox`, tags it `busybox`, and is driven by the same docker CLI '
         f'({cli}) over its own socket. dockerd runs with `--iptables=false --ip-forward=false` and its own '
         '`--bip` so that it does not touch the host firewall other users rely on (containers still get a '
         'bridge network). Everything is stopped and removed at the end (trap).')
L.append('')
L.append(f'Samples: {RUNS} per latency metric (after one unrecorded warm-up `run`); the parallel start '
         f'{PAR_REPS} times; memory and capacity once. `start`/`stop` use '
         "`sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'` on every engine, so `stop` measures a container "
         'that exits on SIGTERM everywhere (a bare `sleep` as PID 1 ignores SIGTERM under runc/runsc/podman, '
         'which would make `stop` its 10 s timeout there, but not under jevm, where the agent is PID 1). '
         'Idle memory: PSS from `/proc/PID/smaps_rollup` summed over the engine\'s whole process set '
         '(the daemon, every process naming its temp dir — containerd, shims, conmon, runsc sandboxes/gofers, '
         'QEMU — and all their descendants, container processes included), minus the same sum with no '
         'container, divided by N; containers are `busybox sleep 3600` started one at a time. PSS counts '
         'user-space memory only: the kernel memory a container costs (cgroups, network namespace and veth, '
         'overlay mounts, page tables) is not in it, which favours runc/podman; a jevm container\'s guest '
         'kernel and page cache live in QEMU\'s memory and are counted. Capacity: '
         f'keeps starting them until {CAP_MAX} are running, {CAP_SECONDS} s have passed, a start fails, or '
         'the median of the last 5 start latencies exceeds twice that of the first 5; a bound reached is '
         'reported as "≥ N (bounded)". `RUNS`, `PAR`, `PAR_REPS`, `CAP_MAX`, `CAP_SECONDS`, `ENGINES` change this.')
L.append('')
date = datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M UTC')
L.append(f'### {date}: {os.cpu_count()} cores ({cpu_model()}), {mem_gib:.1f} GiB, kernel {platform.release()}; '
         f'jevm accelerator: {accel}; whole run {int(total_s) // 60} min {int(total_s) % 60} s; load average at the end {" ".join(load)}')
L.append('')
if versions:
    L.append('Engines: ' + '; '.join(v.strip() for v in versions) + '.')
    L.append('')
for e in ENGINES:
    if unavail[e]:
        L.append(f'**{LABEL[e]}: could not run here** — ' + '; '.join(unavail[e]))
        L.append('')
others = [e for e in ('runc', 'runsc', 'podman')]
L.append('Ratios (medians; below 1 means jevm is faster / smaller):')
L.append('')
L.append('| metric | ' + ' | '.join(f'jevm / {SHORT[o]}' for o in others) + ' |')
L.append('| --- |' + ' --- |' * len(others))
for m, title in LAT:
    L.append(f'| {title} | ' + ' | '.join(fmt_ratio(med('jevm', m), med(o, m)) for o in others) + ' |')
for n in (10, 50):
    L.append(f'| idle PSS per container, N={n} | ' + ' | '.join(
        fmt_ratio(one('jevm', f'pss_per_container_n{n}'), one(o, f'pss_per_container_n{n}')) for o in others) + ' |')


def cap_str(e):
    c = one(e, 'capacity')
    if c is None:
        return 'n/a'
    reason = next((n for n in notes.get(e, []) if n.startswith('capacity:')), '')
    bounded = 'bound' in reason
    return f'≥ {int(c)} (bounded)' if bounded else f'{int(c)}'


L.append('| idle containers held (capacity) | ' + ' | '.join(f'{cap_str("jevm")} vs {cap_str(o)}' for o in others) + ' |')
L.append('')
for m, title in LAT:
    L.append(f'{title}, ms:')
    L.append('')
    L.append('| engine | n | min | median | p95 |')
    L.append('| --- | --- | --- | --- | --- |')
    for e in ENGINES:
        s = stats(e, m)
        if s:
            L.append(f'| {LABEL[e]} | {s[0]} | {s[1]:.0f} | {s[2]:.0f} | {s[3]:.0f} |')
        else:
            L.append(f'| {LABEL[e]} | 0 | n/a | n/a | n/a |')
    L.append('')
L.append('Idle memory (PSS of the whole engine; per container = (total − baseline) / N):')
L.append('')
L.append('| engine | baseline (no container) | per container, N=10 | per container, N=50 | total at N=50 |')
L.append('| --- | --- | --- | --- | --- |')


def mib(v):
    return 'n/a' if v is None else f'{v / 1024:.1f} MiB'


for e in ENGINES:
    L.append(f'| {LABEL[e]} | {mib(one(e, "pss_baseline_kib"))} | {mib(one(e, "pss_per_container_n10"))} | '
             f'{mib(one(e, "pss_per_container_n50"))} | {mib(one(e, "pss_total_kib_n50"))} |')
L.append('')
L.append('Capacity (idle `busybox sleep` containers started one at a time):')
L.append('')
L.append('| engine | containers running | `docker run -d` latency: first 5 median / last 5 median | why it stopped |')
L.append('| --- | --- | --- | --- |')
for e in ENGINES:
    v = raw.get((e, 'cap_start_latency'), [])
    reason = next((n[len('capacity: '):] for n in notes.get(e, []) if n.startswith('capacity:')), 'n/a')
    lat = f'{pct(v[:5], 50):.0f} / {pct(v[-5:], 50):.0f} ms' if v else 'n/a'
    L.append(f'| {LABEL[e]} | {cap_str(e)} | {lat} | {reason.split("; stopped because: ")[-1]} |')
L.append('')
# the first 2 + 2*RUNS starts are one at a time (availability check, warm-up,
# run --rm, start); the rest include the parallel and capacity phases.
nseq = 2 + 2 * int(RUNS)
for m in ('clone_restore', 'clone_to_entrypoint'):
    if raw.get(('jevm', m)):
        raw[('jevm', m + '_seq')] = raw[('jevm', m)][:nseq]
cr, ce = stats('jevm', 'clone_restore_seq'), stats('jevm', 'clone_to_entrypoint_seq')
ca = stats('jevm', 'clone_to_entrypoint')
L.append(f'jevm only (accelerator **{accel}**, from jevmd\'s log): default template cold boot + snapshot {tmpl}; '
         + (f'clone restored (QEMU start → migration done) min/median/p95 {cr[1]:.0f} / {cr[2]:.0f} / {cr[3]:.0f} ms, '
            if cr else '')
         + (f'clone → entrypoint running {ce[1]:.0f} / {ce[2]:.0f} / {ce[3]:.0f} ms, over the {ce[0]} starts made one at a time '
            f'(over all {ca[0]} starts of the run, the {PAR}-way parallel and the capacity ones included: '
            f'{ca[1]:.0f} / {ca[2]:.0f} / {ca[3]:.0f} ms).' if ce else ''))
L.append('')
qemu_kinds = [('tcg_code', "TCG's translated-code buffer (anonymous, executable; `--tcg-tb-size`)"),
              ('tcg_tlb', 'the largest other anonymous region (by its size, TCG\'s soft-MMU TLBs)'),
              ('guest_memory', 'the guest\'s RAM: the template\'s memory file, private (pages the guest wrote, and its share of those all clones read)'),
              ('qemu_heap', 'QEMU\'s heap, malloc arenas, stacks and other anonymous memory'),
              ('qemu_files', 'QEMU\'s binary and libraries (shared by all QEMUs, counted in shares)')]
if any(one('jevm', 'qemu_pss_' + k) is not None for k, _ in qemu_kinds):
    total = sum(one('jevm', 'qemu_pss_' + k) or 0 for k, _ in qemu_kinds)
    L.append('Where an idle jevm container\'s memory goes (the QEMU of the 5th of the idle containers, '
             f'`/proc/PID/smaps` at N=10; {total / 1024:.1f} MiB PSS in all):')
    L.append('')
    L.append('| part | PSS |')
    L.append('|---|---|')
    for k, what in qemu_kinds:
        v = one('jevm', 'qemu_pss_' + k)
        if v is not None:
            L.append(f'| {what} | {v / 1024:.1f} MiB |')
    L.append('')
phases = sorted({m for (e, m) in raw if e == 'jevm' and m.startswith('phase_')},
                key=lambda m: -(stats('jevm', m)[2]))
if phases:
    L.append('Where a jevm start\'s time goes (every start of the run, from the "container started" lines: '
             'the daemon\'s start steps, daemon/steps.go, and with `guest_` the agent\'s phases inside the '
             'start-process step), median and p95 in ms:')
    L.append('')
    L.append('| phase | n | median | p95 |')
    L.append('|---|---|---|---|')
    for m in phases:
        n, _, p50, p95 = stats('jevm', m)
        L.append(f'| {m[len("phase_"):-len("_ms")]} | {n} | {p50:.0f} | {p95:.0f} |')
    L.append('')
L.append('Reading it: a jevm `start` is a QEMU process restoring the template snapshot (the "clone restored" '
         'time above) and then the guest resuming, its agent setting up the container and starting the process, '
         'all of it emulated by TCG on these hosts; with runc, runsc and podman a start is a few forks and '
         'namespace set-ups on the host kernel. On 2 cores, 20 VMs resuming at once contend for the CPU, which '
         'is why the parallel start is the worst ratio. `create`, `stop` and `rm` are of the same order on every '
         'engine (`rm` of a stopped jeVM is only files). Memory: a jevm container is a whole VM (guest kernel, '
         'agent, page cache, plus the TCG translation cache — see the Core section) while an idle runc container '
         'costs the engine one shim (dockerd) or one conmon (podman) in user space; gVisor\'s Sentry and gofer '
         'sit in between. ' + ('No engine reached a limit within the bounds (capacity.png shows how start latency grows as '
         'idle containers accumulate). ' if all('bounded' in cap_str(e) for e in ran) else
         'Where an engine stopped before the bound, the capacity table says why. ') + 'All of this is TCG: under KVM the guest-side part of a '
         'jevm start and the translation cache would shrink; not measurable on these hosts.')
L.append('')
other_notes = [(e, n) for e in ENGINES for n in notes.get(e, [])
               if not n.startswith(('UNAVAILABLE', 'capacity:', 'accelerator:'))]
if other_notes:
    L.append('Failures and remarks during the run:')
    L.append('')
    for e, n in other_notes:
        L.append(f'- {SHORT.get(e, e)}: {n}')
    L.append('')
if charts:
    L.append('Charts (regenerated by `make bench`): ' + ', '.join(f'![{c}](bench/{c})' for c in charts))
    L.append('')
L.append('Raw samples: `bench/results/compare-<time>/raw.csv` (not committed); the summary of the latest run: '
         '[`docs/bench/summary.csv`](bench/summary.csv).')
L.append('')
section = '\n'.join(L)
with open(os.path.join(res, 'section.md'), 'w') as f:
    f.write(section)
print(section)

if not no_doc:
    d = os.path.join(root, 'docs', 'bench')
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(res, 'summary.csv'), os.path.join(d, 'summary.csv'))
    for c in charts:
        shutil.copy(os.path.join(res, c), os.path.join(d, c))
    p = os.path.join(root, 'docs', 'BENCHMARKS.md')
    doc = open(p).read()
    m = re.search(r'^## Side by side \(issue 7\).*?(?=^## |\Z)', doc, flags=re.S | re.M)
    if m:
        doc = doc[:m.start()] + section + ('\n' if m.end() < len(doc) else '') + doc[m.end():]
    else:
        doc = doc.rstrip('\n') + '\n\n' + section
    open(p, 'w').write(doc)
    print(f'updated {p} and {d}', file=sys.stderr)
