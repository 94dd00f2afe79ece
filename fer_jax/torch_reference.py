"""PyTorch's versions of the project's models, timed beside them by
`python -m fer_jax.bench --reference`: the ancestor repository's VGG19-BN
(written here) and efficientnet-pytorch's EfficientNet-B0. torch is a
test-only dependency, imported when a reference is built.
"""
from fer_jax.models import vgg


def _torch_vgg19(width):
  """The ancestor repository's VGG19-BN in PyTorch."""
  from torch import nn as tnn  # pylint: disable=g-import-not-at-top
  layers_, cin = [], 1
  for convs, c in vgg.STAGES:
    c = max(1, round(c * width))
    for _ in range(convs):
      layers_ += [tnn.Conv2d(cin, c, 3, padding=1), tnn.BatchNorm2d(c),
                  tnn.ReLU(inplace=True)]
      cin = c
    layers_.append(tnn.MaxPool2d(2, 2))
  return tnn.Sequential(*layers_, tnn.Flatten(), tnn.Dropout(0.5),
                        tnn.Linear(cin, 7))


def _torch_efficientnet_b0(width):
  del width
  from efficientnet_pytorch import EfficientNet  # pylint: disable=g-import-not-at-top
  return EfficientNet.from_name('efficientnet-b0', num_classes=7)


REFERENCES = {'vgg19': ('torch_vgg19', _torch_vgg19),
                    'efficientnet_b0': ('efficientnet_pytorch',
                                        _torch_efficientnet_b0)}


def torch_step(name, mode, batch, shape, width=1.0):
  """PyTorch's version of model `name` (SGD as ours): (the call to time,
  its record without the timings)."""
  import torch  # pylint: disable=g-import-not-at-top
  label, build = REFERENCES[name]
  model = build(width)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                              weight_decay=5e-4)
  h, w, c = shape
  x = torch.rand(batch, c, h, w)
  y = torch.randint(0, 7, (batch,))

  def train_step():
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()

  def infer():
    with torch.no_grad():
      model(x)

  model.train(mode == 'train')
  return train_step if mode == 'train' else infer, {
      'name': f'{label}/{mode}', 'model': label, 'reference_of': name,
      'mode': mode, 'batch': batch,
      'input': 'x'.join(map(str, shape)), 'width': width,
      'params': sum(p.numel() for p in model.parameters())}
