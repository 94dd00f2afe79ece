"""U-VGG19 on CK+ (CK+48), one fold of the 10-fold protocol.

Run:      python -m fer_jax.data.prepare --dataset=ckplus --manual_dir=PATH
          for k in 1 2 3 4 5 6 7 8 9 10; do
            python launch.py --config=configs/uvgg_ckplus.py \
              --config.data.fold=$k --workdir=runs/uvgg_ckplus/fold$k
          done
          python -m fer_jax.pool_folds runs/uvgg_ckplus/fold*
          (the pooled accuracy over the 10 folds' test predictions, as the
          papers report it; --config.data.protocol=subject for
          subject-independent folds.)
Hardware: one GPU, a few minutes a fold (882 training images, 60 epochs); a
          2-core CPU manages a fold at --config.model.width=0.25.
Expect:   paper: pooled ten-crop accuracy 97.98% under the ancestor
          protocol; not run at this scale here (CK+ is not on the machines
          used so far). Lower under `subject`, where no subject is in both
          train and test.
Sources:  the paper: U-VGG19, 10-fold CK+, the FER2013 augmentations.
          WuJie1010/Facial-Expression-Recognition.Pytorch (mainpro_CK+.py,
          CK.py), which the paper follows: 60 epochs, batch 32, lr 0.01 x0.8
          every epoch after epoch 20, SGD momentum 0.9, weight decay 5e-4,
          clipping 0.1, random crop 44 + flip, ten-crop test, the fold
          assignment of fer_jax/data/ckplus.py. The ancestor reports each
          fold's best test epoch; we report the last epoch (no selection on
          test), and pool_folds prints the best-epoch figure beside it,
          labelled optimistic.
"""
from configs import uvgg_fer2013


def get_config():
  config = uvgg_fer2013.get_config()
  config.epochs = 60
  config.batch_size = 32
  config.eval_batch_size = 128
  config.log_every = 10
  config.selection_split = ''  # CK+ has no validation split: the last epoch
  config.data.name = 'ckplus'
  config.data.protocol = 'ancestor'  # ancestor | subject
  config.data.fold = 1  # 1..10
  config.data.eval_splits = ('test',)
  config.schedule.decay_start = 20
  config.schedule.decay_every = 1
  config.schedule.decay_rate = 0.8
  return config
