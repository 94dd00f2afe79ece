"""The one-hot student of configs/vgg19_fer2013_small_cpu.py with stylised
copies of FER2013's minority classes mixed into training.

Run:      python -m fer_jax.data.stylize --dataset=fer2013 \
              --name=fer2013_minority --add=disgust:1308,surprise:1900
          python launch.py --config=configs/vgg19_fer2013_style_cpu.py \
              --workdir=runs/small_style_s0 [--config.seed=1]
          and PrivateTest once, at the end, as the one-hot student's
          docstring shows.
Hardware: a 2-core x86 CPU: about 5 minutes of stylisation (3,208 faces,
          once), then about ten minutes of training.
Expect:   the stylised rows of the README's results table
          (results/fer2013_style_seed*.json), beside the one-hot student at
          equal steps.
Sources:  the EfficientNet study's stylisation (style-transferred copies of
          minority-class training images, offline), on FER2013: disgust has
          436 training images against happy's 7,215, so every disgust image
          is copied in each of the three default styles (+1,308, the most
          the one-copy-per-style rule allows; 1,744 in all); surprise (3,171,
          the next smallest) gets +1,900, to 5,071, about the size of sad and
          neutral. The total (+3,208) makes the mixed epoch 249 steps, so
          these 9 epochs are 2,241 steps: the one-hot student's 2,240 (10 x
          224), an equal budget. Everything else is that student's recipe.
"""
from configs import vgg19_fer2013_small_cpu


def get_config():
  config = vgg19_fer2013_small_cpu.get_config()
  config.data.extra_train = ('fer2013_minority',)
  config.epochs = 9
  return config
