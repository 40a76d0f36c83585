# Per-seed rows of the README table: the point each defense picks under a ΔACC budget by the report's
# knob rule, else fine-tuning (src/purify/knob.cpp: "tolerant", the default, lowers the budget line by
# half a standard error of the suspect's clean-dev accuracy over DEV_ROWS rows; "largest" does not),
# from results.csv.
# Each dataset and attack of the CSV in turn (in the order they first appear).
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
for ds, at in [(ds, at) for ds in order('dataset') for at in order('attack')]:
  if not any(k[0]==ds and k[1]==at for k in base): continue
  print('==',ds,at,'floor',[round(100*float(base[(ds,at,s)]['clean_model_asr']),1) for s in seeds if (ds,at,s) in base])
  for d in [d for d in ['fine-purifying','magnitude','magnitude-scope-tensor','fine-mixing','fine-pruning','reinit'] if d in order('defense')]:
    out=[]; asr=[]
    for seed in seeds:
        pts=by[(ds,at,seed,d)]
        if not pts: out.append('-'); continue
        ok=[p for p in pts if float(p['dev_acc'])>=line(float(p['suspect_dev_acc']))-1e-12]
        if not ok:
            p=by[(ds,at,seed,'finetune')][0]
        else: p=max(ok,key=lambda p: float(p['knob']))
        asr.append(100*float(p['asr']))
        out.append(f"{p['knob']}:{100*float(p['test_acc']):.1f}/{100*float(p['asr']):.1f}/{100*float(p['flip']):.1f}")
    print(f"  {d:24s}", ' | '.join(out), ' mean ASR %.1f'%st.mean(asr) if asr else '')
