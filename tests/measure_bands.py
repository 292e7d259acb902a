"""Not a test: measures the bands that the notebooks' asserts on trained figures use. Trains the default pretraining
recipe with `seed`, tunes prompts on it (cross-entropy seeds 0-2, contrastive seed 0) and fits the context / free
class vectors on the 5x200 set (03_prompt_tune's "room"); appends one JSON line to OUT/results.jsonl and OUT/room.jsonl.
Run it over seeds and CPU code paths, one at a time (about 3-5 minutes each on 2 cores), e.g.:
    python tests/measure_bands.py 0 native 2 /tmp/bands
    ATEN_CPU_CAPABILITY=default python tests/measure_bands.py 1 default1t 1 /tmp/bands
"""
import json, sys, os, time
import torch
seed, tag, threads, OUT = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
from medvlp.pretrain import pretrain
from medvlp.prompt_tune import prompt_tune
out = f'{OUT}/{tag}_s{seed}'
t0 = time.time()
r = pretrain(seed=seed, output_dir=out + '/pre', run_name='bands')
res = dict(tag=tag, seed=seed, threads=threads, cap=os.environ.get('ATEN_CPU_CAPABILITY', 'native'),
           zs=r.metrics['zero_shot_5x200_acc'], final_loss=r.metrics['final_loss'], pre_s=time.time() - t0)
for loss, ss in (('ce', (0, 1, 2)), ('contrastive', (0,))):
    for s in ss:
        p = prompt_tune(model_dir=str(r.model_dir), loss=loss, epochs=50, lr=0.3, seed=s, output_dir=f'{out}/pt_{loss}{s}', progress=False)
        t, d = p.table.loc['tuned'].loc['accuracy'], p.table.loc['tuned - hand'].loc['accuracy']
        res[f'{loss}{s}'] = dict(hand=p.metrics['hand_accuracy'], tuned=t.value, gain=d.value, gain_low=d.ci_low, gain_high=d.ci_high)
res['total_s'] = time.time() - t0
print(json.dumps(res))
with open(f'{OUT}/results.jsonl', 'a') as f: f.write(json.dumps(res) + '\n')
# the 'room' figures of 03_prompt_tune (context fitted on the test set vs free class vectors)
import torch.nn as nn, torch.nn.functional as F
from medvlp.prompt_tune import PromptLearner, zero_shot_set, _train, _accuracy, CLASSES_5X200
from medvlp.pretrain import frozen_model
from medvlp.evaluate import study_embeddings
from medvlp.data import torch_threads
from medvlp.prompt_tune import class_embeddings_hand
classes = CLASSES_5X200
test_studies, y_test = zero_shot_set(classes)
m0, _ = frozen_model(r.model_dir)
img0 = study_embeddings(m0, test_studies, m0.image_size); yt = torch.as_tensor(y_test)
oracle = PromptLearner(m0, classes, 30, 'a chest x-ray showing')
with torch_threads(1): _train(oracle, img0, yt, 'ce', 200, 1e-2, 'adamw', 0.9, 0.0, len(img0), 0, 0.0, False, 0, progress=False)
free = nn.Parameter(class_embeddings_hand(m0, classes).clone())
opt = torch.optim.AdamW([free], lr=1e-2, weight_decay=0.0)
for _ in range(200):
    l = F.cross_entropy(m0.scale().detach() * img0 @ F.normalize(free, dim=-1).T, yt)
    opt.zero_grad(); l.backward(); opt.step()
with torch.no_grad(): room = dict(context=_accuracy(img0, oracle(), yt), free=_accuracy(img0, F.normalize(free, dim=-1), yt))
room = {k: float(v) for k, v in room.items()}
print(json.dumps(dict(tag=tag, seed=seed, **room)))
with open(f'{OUT}/room.jsonl', 'a') as f: f.write(json.dumps(dict(tag=tag, seed=seed, **room)) + '\n')
