# Per-seed rows of the README table: the point each defense picks under a ΔACC budget (the report's
# "largest knob within budget, else fine-tuning" rule, within_budget tolerance 1e-12), from results.csv.
# Usage: python3 docs/results/real-small/per_seed.py docs/results/real-small/results.csv 3
import csv,collections,sys,statistics as st
rows=list(csv.DictReader(open(sys.argv[1])))
th=float(sys.argv[2]) if len(sys.argv)>2 else 3
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
        ok=[p for p in pts if float(p['dev_acc'])>=float(p['suspect_dev_acc'])-th/100-1e-12]
        if not ok:
            p=by[(at,seed,'finetune')][0]
        else: p=max(ok,key=lambda p: float(p['knob']))
        asr.append(100*float(p['asr']))
        out.append(f"{p['knob']}:{100*float(p['test_acc']):.1f}/{100*float(p['asr']):.1f}/{100*float(p['flip']):.1f}")
    print(f"  {d:24s}", ' | '.join(out), ' mean ASR %.1f'%st.mean(asr) if asr else '')
