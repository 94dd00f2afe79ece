"""U-VGG19 on FER2013 for faces it has never seen, sized for 2.5 hours of a
2-core CPU: the shipped model (v2, fer_jax/pretrained/fer2013.msgpack).

Run:      python -m fer_jax.data.prepare --dataset=fer2013 --manual_dir=PATH
          python launch.py --config=configs/uvgg_fer2013_cpu.py
          python -m fer_jax.logit_adjustment --workdir=runs/uvgg_fer2013_cpu
          python -m fer_jax.export --workdir=runs/uvgg_fer2013_cpu \
              --output=fer_jax/pretrained/fer2013.msgpack
          python -m fer_jax.pretrained --evaluate --robustness \
              --record=results/shipped_fer2013_v2.json
          (the third command chooses a post-hoc tau on PublicTest; the
          fourth writes fer_jax/pretrained/fer2013.msgpack; the last measures
          the file on PublicTest and, once, PrivateTest).
Hardware: a 2-core x86 CPU. Width and epochs from the scaling study
          (results/study_*.json): at about equal wall time (22 and 20 min),
          1/4 width for 10 epochs beat 1/2 width for 4 on PublicTest
          (58.4% against 54.6%, balanced after the post-hoc tau 54.0%
          against 51.8%), so the budget buys epochs at 1/4 width. The run
          that made the shipped file trained for 112 min (60 epochs,
          evaluations included) on a 2-core Intel Xeon that tests shared.
Expect:   results/shipped_fer2013_v2.json and the README's results table,
          measured from the exported file by the last command (PublicTest,
          and PrivateTest once): the targets were PublicTest ten-crop
          accuracy >= 64%, balanced accuracy >= 58% and every class's recall
          >= 30%. Selection picks the epoch of best PublicTest balanced
          accuracy; the logit adjustment's tau is in the run's
          logit_adjustment.json and the exported file.
Sources:  configs/uvgg_fer2013.py (the paper's U-VGG19, crop 44, flip,
          ten-crop test, SGD with momentum 0.9, weight decay 5e-4, clipping
          0.1), with what a CPU budget and other datasets' faces ask for:
          a cosine decay of lr 0.01 so that the short run ends converged (as
          configs/demo.py); no Cutout (it cost 2-3 points in 3-epoch runs,
          the README's ablation rows); the affine, photometric and erasing
          augmentations of fer_jax/data/transforms.py at moderate strength
          (faces as a detector crops them); selection on PublicTest's
          balanced accuracy; the class balance set after training by the
          post-hoc logit adjustment (Menon et al., ICLR 2021): in the study
          (10 epochs at 1/4 width) the logit-adjusted loss with label
          smoothing trailed the plain loss by 10 points of PublicTest
          accuracy after 5 epochs (43.1% against 52.9%;
          results/study_u025_e10_*.json).
"""
from configs import uvgg_fer2013


def get_config():
  config = uvgg_fer2013.get_config()
  config.model.width = 0.25
  config.epochs = 60
  config.schedule.name = 'cosine'
  config.log_every = 100
  config.selection_metric = 'balanced_accuracy'
  # PrivateTest is measured once, on the exported file.
  config.data.eval_splits = ('validation',)
  config.data.cutout_holes = 0
  config.data.rotation = 10.0
  config.data.scale = (0.85, 1.15)
  config.data.translation = 0.05
  config.data.brightness = 0.3
  config.data.contrast = 0.3
  config.data.erasing = 0.25
  return config
