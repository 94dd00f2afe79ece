"""The fields every config has, with neutral values; not a recipe.

Each model's base config (`vgg19_fer2013.py`, `effnet_b0_rafdb.py`) starts
from this and sets its paper's recipe; variants import that base and
override a few fields. `fer_jax.train.validate` checks every field.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.epochs = 1
  config.batch_size = 128  # global, over all devices
  config.eval_batch_size = 128  # images; ten crops of each are evaluated
  config.log_every = 50
  config.keep_checkpoints = 2
  # Activations' dtype: 'float32' or 'bfloat16' (mixed precision for GPUs and
  # TPUs; parameters, BatchNorm statistics and the loss stay float32).
  config.dtype = 'float32'
  # Checkpoint selection; the split itself is reported as well as the best
  # epoch on every other eval split (the papers' way, labelled so). '': the
  # last epoch.
  config.selection_split = 'validation'
  # What selects on it: 'accuracy' or 'balanced_accuracy' (the mean
  # per-class recall, for imbalanced sets such as FER2013's disgust).
  config.selection_metric = 'accuracy'

  config.data = ml_collections.ConfigDict()
  config.data.name = 'fer_synth'
  config.data.data_dir = config_dict.placeholder(str)  # None: TFDS default
  config.data.train_split = 'train'
  # Prepared stylised copies mixed into training (fer_jax/data/stylize.py).
  config.data.extra_train = ()
  config.data.holdout = 0  # >0: the first N train images form split 'holdout'
  config.data.eval_splits = ('validation', 'test')
  # 'crop': a random crop x crop window (the FER papers); 'resized_crop': a
  # random area crop_scale of the image resized to crop x crop, tested on
  # the whole image resized (torchvision's RandomResizedCrop, EfficientFace).
  config.data.augment = 'crop'
  config.data.crop = 44
  config.data.crop_scale = (0.08, 1.0)
  config.data.flip = True
  config.data.cutout_holes = 0
  config.data.cutout_length = 16
  # Faces as a detector or another dataset gives them (fer_jax/data/
  # transforms.py; all off by default, as in the papers). Affine: a rotation
  # of up to +-degrees, a scale drawn from (low, high), a shift of up to this
  # fraction of the side, the border filled by reflection.
  config.data.rotation = 0.0
  config.data.scale = (1.0, 1.0)
  config.data.translation = 0.0
  # Photometric: brightness and contrast factors in 1 +- these, a gamma in
  # [1 / (1 + g), 1 + g].
  config.data.brightness = 0.0
  config.data.contrast = 0.0
  config.data.gamma = 0.0
  # Random erasing (Zhong et al., AAAI 2020): with this probability a
  # rectangle of `erasing_area` of the image, aspect 0.3-3.3, filled with
  # noise.
  config.data.erasing = 0.0
  config.data.erasing_area = (0.02, 0.33)
  config.data.eval_crop = 'ten'  # ten | centre
  # None: images in [0, 1]; else one value per channel, as tuples.
  config.data.mean = config_dict.placeholder(tuple)
  config.data.std = config_dict.placeholder(tuple)
  # 'inverse_frequency' weights each image's loss by N / (K n_class); the
  # papers train unweighted.
  config.data.class_weights = 'none'
  config.data.workers = 0  # grain worker processes; 0 reads in-process
  config.data.threads = 4

  # The training loss on one-hot labels. label_smoothing: the target is
  # (1 - e) one-hot + e / K. logit_adjustment: tau of Menon et al. (ICLR
  # 2021), tau * log(training class prior) added to the logits in the loss,
  # so that the plain logits aim at balanced error.
  config.loss = ml_collections.ConfigDict()
  config.loss.label_smoothing = 0.0
  config.loss.logit_adjustment = 0.0

  config.model = ml_collections.ConfigDict()
  config.model.name = 'vgg19'

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = 'sgd'
  config.optimizer.lr = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 0.0
  config.optimizer.clip = 0.0  # element-wise gradient clipping; 0: none

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = 'constant'  # constant | step | cosine
  # 'step': lr * decay_rate ** ((epoch - decay_start) // decay_every).
  config.schedule.decay_start = 0
  config.schedule.decay_every = 1
  config.schedule.decay_rate = 1.0

  # Label distribution learning (fer_jax/ldl.py): a frozen teacher's class
  # distributions are the targets. None: one-hot labels.
  config.ldl = ml_collections.ConfigDict()
  # A fer_jax workdir, a fer_jax.convert output or an exported .msgpack.
  config.ldl.teacher = config_dict.placeholder(str)
  # T: softmax(teacher logits / T); only 1, EfficientFace's (config_check
  # says why).
  config.ldl.temperature = 1.0
  # lambda: target = (1 - lambda) * teacher + lambda * one-hot label.
  config.ldl.onehot_weight = 0.0
  # 'class_mean': mean over batch x classes (EfficientFace's code);
  # 'sample_mean': summed over classes, mean over the batch (its Eq. 2).
  config.ldl.reduction = 'class_mean'
  return config
