import re, statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if not line.startswith('s='): continue
    head, _, table = line.partition('|')
    kv = dict(x.split('=') for x in head.split())
    cells = [c.strip() for c in table.split('|')]
    # records, subs, qos, run, dps, ns, dpcs, p50, p90, p99, p999, max, recv, lost, dup, dropped, slow, sustained
    if len(cells) < 18 or not cells[4]: continue
    rows[(kv['s'], kv['q'], kv['r'], kv['bin'])].append((kv['load'], cells))
for key in sorted(rows):
    rs = rows[key]
    med = lambda i: statistics.median(float(c[i]) for _, c in rs)
    ns = ' · '.join(c[5] for _, c in rs)
    loads = ' '.join(l for l, _ in rs)
    sus = sum(1 for _, c in rs if c[17] == 'yes')
    print(f"shards={key[0]} qos={key[1]} rate={key[2]} {key[3]:4}: n={len(rs)} deliv/s={med(4):,.0f} ns/deliv={med(5):.0f} [{ns}] per-core-s={1e9/med(5)/1e6:.2f}M p50={med(7):.0f} p90={med(8):.0f} p99={med(9):.0f} p99.9={med(10):.0f} max={med(11):.0f} sustained={sus}/{len(rs)} lost={sum(int(c[13]) for _,c in rs)} slow={sum(int(c[16]) for _,c in rs)} loads={loads}")
