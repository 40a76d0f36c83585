# Per-seed rows of the README table: the point each defense picks under a ΔACC budget by the report's
# knob rule, else fine-tuning (src/purify/knob.cpp: "tolerant", the default, lowers the budget line by
# half a standard error of the suspect's clean-dev accuracy over DEV_ROWS rows; "largest" does not),
# from results.csv.
# Each dataset and attack of the CSV in turn (in the order they first appear), then a summary: which
# defense has the lowest mean ASR, and whether fine-purifying meets issue 13's bar (mean flip <= 5%,
# mean ASR within 3 points of the clean model's mean floor; the issue asks it of BadWord, AddSent, EP).
# Usage: python3 docs/results/real-small/per_seed.py docs/results/real-small/results.csv 3 [tolerant|largest] [DEV_ROWS=300]
import csv,collections,math,sys,statistics as st
rows=list(csv.DictReader(open(sys.argv[1])))
th=float(sys.argv[2]) if len(sys.argv)>2 else 3
rule=sys.argv[3] if len(sys.argv)>3 else 'tolerant'
n_dev=int(sys.argv[4]) if len(sys.argv)>4 else 300
def line(sus):
    l=sus-th/100
    return l-0.5*math.sqrt(sus*(1-sus)/n_dev) if rule=='tolerant' else l
by=collections.defaultdict(list); base={}
for r in rows:
    if r['defense']=='none': base[(r['dataset'],r['attack'],r['seed'])]=r; continue
    by[(r['dataset'],r['attack'],r['seed'],r['defense'])].append(r)
seeds=sorted({r['seed'] for r in rows})
order=lambda key: list(dict.fromkeys(r[key] for r in rows))
summary=[]
for ds, at in [(ds, at) for ds in order('dataset') for at in order('attack')]:
  if not any(k[0]==ds and k[1]==at for k in base): continue
  floors=[100*float(base[(ds,at,s)]['clean_model_asr']) for s in seeds if (ds,at,s) in base]
  print('==',ds,at,'floor',[round(f,1) for f in floors])
  means={}
  for d in [d for d in ['fine-purifying','magnitude','magnitude-scope-tensor','fine-mixing','fine-pruning','reinit'] if d in order('defense')]:
    out=[]; asr=[]; flip=[]
    for seed in seeds:
        pts=by[(ds,at,seed,d)]
        if not pts: out.append('-'); continue
        ok=[p for p in pts if float(p['dev_acc'])>=line(float(p['suspect_dev_acc']))-1e-12]
        if not ok:
            p=by[(ds,at,seed,'finetune')][0]
        else: p=max(ok,key=lambda p: float(p['knob']))
        asr.append(100*float(p['asr'])); flip.append(100*float(p['flip']))
        out.append(f"{p['knob']}:{100*float(p['test_acc']):.1f}/{100*float(p['asr']):.1f}/{100*float(p['flip']):.1f}")
    print(f"  {d:24s}", ' | '.join(out), ' mean ASR %.1f'%st.mean(asr) if asr else '')
    if asr: means[d]=(st.mean(asr),st.mean(flip),len(asr))
  if 'fine-purifying' in means:
    low=min(v[0] for v in means.values())
    fa,ff,n=means['fine-purifying']
    summary.append((ds,at,n,[d for d,v in means.items() if v[0]==low],fa,ff,st.mean(floors)))
# The issue-13 bar per (dataset, attack): fine-purifying's mean ASR lowest of the listed defenses (ties
# count), mean flip <= 5% and mean ASR within 3 points of the clean model's mean floor.
print('\n== summary: seeds, lowest mean ASR, fine-purifying mean ASR / flip against the floor')
for ds,at,n,lowest,fa,ff,fl in summary:
  bar='meets' if ff<=5 and fa<=fl+3 else 'misses'
  print(f"  {ds:10s} {at:8s} {n} seed(s)  lowest: {','.join(lowest):28s} fine-purifying {fa:.1f} / {ff:.1f} (floor {fl:.1f}): {bar} the bar")
