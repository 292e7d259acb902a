"""Not a test: the zero-shot 5x200 accuracy of a tiny recipe over seeds, as its YAML comment and 02_pretrain's slow
cell quote them. One JSON line per seed; run it again under ATEN_CPU_CAPABILITY=default for the other CPU code path:
    OMP_NUM_THREADS=1 python tests/measure_recipe.py params/tiny/siglip.yaml 0,1,2
    OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default python tests/measure_recipe.py params/tiny/siglip.yaml 0 epochs=12
"""
import json, os, sys, tempfile, time
import yaml
from medvlp.pretrain import pretrain

recipe, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(',')]
overrides = {k: yaml.safe_load(v) for k, v in (a.split('=', 1) for a in sys.argv[3:])}
for seed in seeds:
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d: r = pretrain(recipe, output_dir=d, seed=seed, **overrides)
    print(json.dumps(dict(recipe=recipe, seed=seed, cap=os.environ.get('ATEN_CPU_CAPABILITY', 'native'), **overrides,
                          zero_shot_5x200=r.metrics['zero_shot_5x200_acc'], wall_s=round(time.time() - t0))), flush=True)
