"""U-VGG19 on FER2013, the paper's full recipe.

Run:      python -m fer_jax.data.prepare --dataset=fer2013 --manual_dir=PATH
          python launch.py --config=configs/uvgg_fer2013.py
Hardware: one NVIDIA GPU; on a CPU only smoke runs (--config.epochs=1
          --config.model.width=0.25).
Expect:   paper: PrivateTest ten-crop 73.75%; not run at this scale here
          (the README's results table has what smaller runs measured).
          Selected on PublicTest; the best-epoch-on-PrivateTest figure the
          paper reports is printed too, labelled as such.
Sources:  as configs/vgg19_fer2013.py; only the model differs (see
          fer_jax/models/vgg.py for the architecture and its choices).
"""
from configs import vgg19_fer2013


def get_config():
  config = vgg19_fer2013.get_config()
  config.model.name = 'uvgg19'
  return config
