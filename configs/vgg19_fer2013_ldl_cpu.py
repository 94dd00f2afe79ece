"""The student of configs/vgg19_fer2013_small_cpu.py trained with label
distribution learning from the shipped model: a FER2013 LDL pair for a CPU.

Run:      python launch.py --config=configs/vgg19_fer2013_ldl_cpu.py \
              --workdir=runs/small_ldl_s0 [--config.seed=1]
          and PrivateTest once, at the end, as the one-hot student's
          docstring shows. The teacher is the shipped model
          (fer_jax/pretrained/fer2013.msgpack). The recorded results
          (results/fer2013_ldl_seed*.json) were taught by its first
          version, v1, exported from a run of configs/vgg19_fer2013_cpu.py
          (`git show 7b44822:fer_jax/pretrained/fer2013.msgpack > v1.msgpack`
          and --config.ldl.teacher=v1.msgpack reproduce them); to train
          that teacher yourself (about 50 minutes on a 2-core CPU):
          python launch.py --config=configs/vgg19_fer2013_cpu.py \
              --workdir=runs/teacher
          python launch.py --config=configs/vgg19_fer2013_ldl_cpu.py \
              --workdir=runs/small_ldl_s0 --config.ldl.teacher=runs/teacher
Hardware: a 2-core x86 CPU, about a quarter longer than the one-hot student
          (the teacher's forward pass runs in every step).
Expect:   the LDL rows of the README's results table
          (results/fer2013_ldl_seed*.json), beside the one-hot student at
          equal steps.
Sources:  EfficientFace (Zhao et al., AAAI 2021; zengqunzhao/EfficientFace
          main.py): targets softmax(teacher logits), T = 1, no one-hot mix,
          the teacher frozen in eval mode on the student's augmented batch.
          One change: the 'sample_mean' reduction (the EfficientNet study's
          Eq. 2) instead of EfficientFace's 'class_mean', because this
          student's lr 0.01 was set for the per-image cross-entropy; the
          class mean would divide every step by 7 and compare LDL at a
          seventh of the one-hot student's learning rate.
"""
from configs import vgg19_fer2013_small_cpu
from fer_jax import weights


def get_config():
  config = vgg19_fer2013_small_cpu.get_config()
  config.ldl.teacher = weights.SHIPPED
  config.ldl.temperature = 1.0
  config.ldl.onehot_weight = 0.0
  config.ldl.reduction = 'sample_mean'
  return config
