"""U-VGG19 at 1/8 width on fer_synth, the embedded dataset: the demo.

Run:      python launch.py --config=configs/demo.py
Hardware: a 2-core CPU, under 10 minutes including compilation; rerunning
          with the same --workdir resumes (or, when done, just reports).
Expect:   fer_synth test ten-crop accuracy about 98%, selected on validation
          (measured: 98.0% in 2 min 11-18 s on a 2-core AVX-512 CPU; 3 min
          21 s on an older 2-core AVX2 one).
Sources:  configs/uvgg_fer2013.py (the paper's recipe), scaled down: width
          1/8, 8 epochs, batch 64, cosine decay of the paper's lr 0.01 so that
          a short run ends converged.
"""
from configs import uvgg_fer2013


def get_config():
  config = uvgg_fer2013.get_config()
  config.data.name = 'fer_synth'
  config.model.width = 0.125
  config.epochs = 8
  config.batch_size = 64
  config.eval_batch_size = 250
  config.log_every = 20
  config.schedule.name = 'cosine'
  return config
