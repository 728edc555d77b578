"""Worst-case values, on the healthy traces, of the statistics the detectors threshold (docs/alerts.md).

    python benchmarks/alerts/derive_thresholds.py
"""
import json

import numpy as np

from orpo_dash.diagnostics import load_metrics_file
from orpo_dash.diagnostics.stats import trend
labels=json.load(open('benchmarks/alerts/traces/labels.json'))
W=40
def windows(s, start=0, every=5):
    st=np.array([p[0] for p in s],float); v=np.array([p[1] for p in s],float)
    for e in range(W, len(v)+1, every):
        if st[e-1]>=start: yield st[e-W:e], v[e-W:e]
def learn_step(path):
    s=load_metrics_file(path)['log_odds_ratio']; v=np.array([p[1] for p in s])
    med=[np.median(v[max(0,i-20):i+21]) for i in range(len(v))]
    return next((s[i][0] for i,m in enumerate(med) if m>0.5), None)
H=[n for n,l in labels.items() if not l]
print("healthy learn steps (real):", sorted(learn_step(f'benchmarks/alerts/traces/{n}.jsonl.gz') for n in H if n.startswith('real')))
rows=[]
for n in H:
    s=load_metrics_file(f'benchmarks/alerts/traces/{n}.jsonl.gz')
    lor=[trend(*w) for w in windows(s['log_odds_ratio'],180)]
    loss=[trend(*w) for w in windows(s['loss'])]
    nll=s['nll_loss']; base=np.median([p[1] for p in nll[:10]])
    fn=[np.median(w[1])/base for w in windows(nll,180)]
    ev=[p[1] for p in s.get('eval/nll_loss',[])]
    evs=[np.median(ev[max(0,i-2):i+1]) for i in range(2,len(ev))]
    best=np.minimum.accumulate(evs) if evs else [1]
    rows.append((n, min(t.median for t in lor), min(t.change for t in lor if t.z<-3) if any(t.z<-3 for t in lor) else 0,
      max((t.change/abs(t.median) for t in loss if t.z>3), default=0), max(fn), max((np.array(evs)-best)/best) if evs else 0))
for r in rows: print(f"{r[0]:26s} minLORmedian {r[1]:6.2f} worstSigLORfall {r[2]:6.2f} worstSigLossRise {r[3]:5.3f} maxNLLfrac {r[4]:5.2f} maxEvalRise {r[5]:5.3f}")
