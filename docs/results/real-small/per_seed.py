# Per-seed rows of the README table: the point each defense picks under a ΔACC budget by the report's
# knob rule, else fine-tuning (src/purify/knob.cpp: "tolerant", the default, lowers the budget line by
# half a standard error of the suspect's clean-dev accuracy over DEV_ROWS rows; "largest" does not),
# from results.csv.
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
    if r['defense']=='none': base[(r['attack'],r['seed'])]=r; continue
    by[(r['attack'],r['seed'],r['defense'])].append(r)
seeds=sorted({r['seed'] for r in rows})
for at in ['badword','addsent','ep','bias']:
  print('==',at,'floor',[round(100*float(base[(at,s)]['clean_model_asr']),1) for s in seeds if (at,s) in base])
  for d in ['fine-purifying','magnitude','magnitude-scope-tensor','fine-mixing','reinit']:
    out=[]; asr=[]
    for seed in seeds:
        pts=by[(at,seed,d)]
        if not pts: out.append('-'); continue
        ok=[p for p in pts if float(p['dev_acc'])>=line(float(p['suspect_dev_acc']))-1e-12]
        if not ok:
            p=by[(at,seed,'finetune')][0]
        else: p=max(ok,key=lambda p: float(p['knob']))
        asr.append(100*float(p['asr']))
        out.append(f"{p['knob']}:{100*float(p['test_acc']):.1f}/{100*float(p['asr']):.1f}/{100*float(p['flip']):.1f}")
    print(f"  {d:24s}", ' | '.join(out), ' mean ASR %.1f'%st.mean(asr) if asr else '')
