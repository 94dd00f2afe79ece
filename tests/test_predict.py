"""Prediction on photos: detection, the same preprocessing as evaluation."""
import csv
import glob
import json
import os
import shutil
import subprocess
import sys

import flax.serialization
import jax
import numpy as np
from PIL import Image
import pytest
from skimage import data

import fixtures
from conftest import REPO, one_epoch_fer2013_run, run_env, within
from fer_jax import annotate
from fer_jax import errors
from fer_jax import evaluation
from fer_jax import experiment
from fer_jax import export
from fer_jax import faces
from fer_jax import logit_adjustment
from fer_jax import predict
from fer_jax import pretrained
from fer_jax import robustness
from fer_jax import teacher as teacher_lib
from fer_jax import tracks
from fer_jax import train
from fer_jax import video
from fer_jax import weights
from fer_jax.data import fer2013
from fer_jax.data import pipeline
from fer_jax.data import prepare

# The astronaut's face in scikit-image's photograph (512x512), hairline to
# chin and ear to ear, read off the image by hand.
ASTRONAUT_FACE = (175, 60, 105, 115)


def _iou(a, b):
  ax, ay, aw, ah = a
  bx, by, bw, bh = b
  w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
  h = max(0, min(ay + ah, by + bh) - max(ay, by))
  return w * h / (aw * ah + bw * bh - w * h)


@pytest.fixture(scope='module')
def fer2013_run(tmp_path_factory):
  """A one-epoch run on a FER2013-layout fixture: (config, workdir, raw)."""
  from configs import vgg19_fer2013_cpu  # pylint: disable=g-import-not-at-top
  return one_epoch_fer2013_run(tmp_path_factory.mktemp('fer2013'),
                               vgg19_fer2013_cpu.get_config())


def test_the_cascade_finds_the_face_in_a_real_photograph():
  boxes = faces.detect(data.astronaut())
  assert len(boxes) == 1
  assert _iou(boxes[0], ASTRONAUT_FACE) >= 0.5, boxes


def test_predictions_on_a_photograph_are_distributions_over_the_classes(
    fer2013_run):
  _, workdir, _ = fer2013_run
  predictor = predict.Predictor.load(workdir)
  image = data.astronaut()
  found, = predictor.predict([image])
  assert len(found) == 1
  face = found[0]
  assert _iou(face['box'], ASTRONAUT_FACE) >= 0.5
  p = face['probabilities']
  assert list(p) == list(predictor.class_names)
  assert abs(sum(p.values()) - 1) < 1e-5 and min(p.values()) >= 0
  assert face['label'] == max(p, key=p.get)
  # No face: an empty list, not an error.
  assert predictor.predict([np.full((64, 64, 3), 128, np.uint8)]) == [[]]
  # A batch of faces gives each face's own probabilities.
  twice = predictor.probabilities([image[60:175, 175:280]] * 3)
  np.testing.assert_allclose(twice, twice[:1].repeat(3, 0), atol=1e-6)


def test_no_detect_reproduces_the_evaluation_probabilities(fer2013_run):
  config, workdir, raw = fer2013_run
  config = config.copy_and_resolve_references()
  config.data.eval_splits = ('validation', 'test')  # evaluation may add test
  evaluation.evaluate(config, workdir)
  with open(os.path.join(workdir, 'eval', 'test_predictions.jsonl')) as f:
    evaluated = [json.loads(line) for line in f]
  # The fixture's images differ pixel for pixel: match files to records.
  builder = prepare.prepare('fer2013', raw, config.data.data_dir)
  source = builder.as_data_source(split='test')
  by_pixels = {source[i]['image'].tobytes(): i for i in range(len(source))}
  paths = sorted(glob.glob(os.path.join(raw, 'test', '*', 'PrivateTest_*')))
  images = [predict.read_image(p) for p in paths]
  predictor = predict.Predictor.load(workdir)
  predicted = predictor.predict(images, detect=False)
  assert len(paths) == len(evaluated) == 9
  for path, image, (face,) in zip(paths, images, predicted):
    grey = predict.to_dataset_image(image, (48, 48, 1))
    record = evaluated[by_pixels[grey.tobytes()]]
    assert record['label'] == os.path.basename(os.path.dirname(path))
    np.testing.assert_allclose(list(face['probabilities'].values()),
                               list(record['probabilities'].values()),
                               atol=1e-5)


def _predict(*args, timeout=300):
  """`python -m fer_jax.predict ARGS`: (exit status, JSON records, stderr)."""
  result = subprocess.run(
      [sys.executable, '-m', 'fer_jax.predict', *map(str, args)],
      cwd=REPO, env=run_env(), capture_output=True, text=True,
      timeout=timeout, check=False)
  records = [json.loads(line) for line in result.stdout.splitlines()
             if line.startswith('{')]
  return result.returncode, records, result.stderr


def test_bad_files_are_reported_and_the_others_predicted(fer2013_run,
                                                         tmp_path):
  _, workdir, raw = fer2013_run
  folder = tmp_path / 'photos'
  (folder / 'more').mkdir(parents=True)
  good = sorted(glob.glob(os.path.join(raw, 'train', 'happy', '*.jpg')))[:2]
  for i, path in enumerate(good):
    shutil.copy(path, folder / ('more' if i else '.') / f'face{i}.jpg')
  fixtures.write_16bit_copies(str(folder / 'face0.jpg'))
  (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really')
  (folder / 'notes.txt').write_text('not an image')
  os.mkfifo(folder / 'pipe.jpg')  # opening it would block forever
  status, records, stderr = _predict(
      folder, '--json', '--no_detect', f'--workdir={workdir}',
      f'--out={tmp_path / "out"}', timeout=120)
  assert status == 1, stderr[-2000:]
  assert [os.path.relpath(r['path'], folder) for r in records] == [
      'broken.jpg', 'face0.jpg', 'face0_16bit.png', 'face0_16bit.tif',
      'notes.txt', 'pipe.jpg', 'more/face1.jpg']
  errors_ = {os.path.basename(r['path']): r['error']
             for r in records if 'error' in r}
  assert 'not a readable image' in errors_['broken.jpg']
  assert 'not a readable image' in errors_['notes.txt']
  assert 'a FIFO, not a regular file' in errors_['pipe.jpg']
  faces_ = {os.path.basename(r['path']): r['faces'] for r in records
            if 'faces' in r}
  for found in faces_.values():
    face, = found
    assert face['box'] == [0, 0, 48, 48]
    assert abs(sum(face['probabilities'].values()) - 1) < 1e-5
  # 16-bit files are the same picture: the same probabilities, not those
  # of a saturated white square.
  for name in ('face0_16bit.png', 'face0_16bit.tif'):
    np.testing.assert_allclose(
        list(faces_[name][0]['probabilities'].values()),
        list(faces_['face0.jpg'][0]['probabilities'].values()), atol=1e-6)
  written = sorted(os.path.relpath(os.path.join(root, name), tmp_path / 'out')
                   for root, _, names in os.walk(tmp_path / 'out')
                   for name in names)
  assert written == ['photos/face0.jpg', 'photos/face0_16bit.png',
                     'photos/face0_16bit.tif', 'photos/more/face1.jpg']


def test_same_named_inputs_get_their_own_outputs_or_are_refused(
    fer2013_run, tmp_path):
  _, workdir, raw = fer2013_run
  face = sorted(glob.glob(os.path.join(raw, 'train', 'happy', '*.jpg')))[0]
  for folder in ('a/photos', 'b/photos', 'c'):
    (tmp_path / folder).mkdir(parents=True)
    shutil.copy(face, tmp_path / folder / 'x.jpg')
  out = tmp_path / 'out'
  # Two folders and a file: each mirrored under its own name.
  status, records, stderr = _predict(
      tmp_path / 'a/photos', tmp_path / 'c', tmp_path / 'c/x.jpg', '--json',
      '--no_detect', f'--workdir={workdir}', f'--out={out}')
  assert status == 0, stderr[-2000:]
  assert len(records) == 3
  assert sorted(str(p.relative_to(out)) for p in out.rglob('*.jpg')) == [
      'c/x.jpg', 'photos/x.jpg', 'x.jpg']
  # Two folders of one name, or two files of one name: refused before
  # anything is predicted or written.
  shutil.rmtree(out)
  for inputs in ((tmp_path / 'a/photos', tmp_path / 'b/photos'),
                 (tmp_path / 'a/photos/x.jpg', tmp_path / 'c/x.jpg')):
    status, records, stderr = _predict(
        *inputs, '--no_detect', f'--workdir={workdir}', f'--out={out}')
    assert status == 1 and not records and not out.exists()
    line, = stderr.strip().splitlines()
    assert line.startswith('error: --out=') and 'would both be written' in line


@pytest.mark.parametrize('args, message', [
    (('{face}', '--video_stride=0'), '--video_stride=0: expected a whole'),
    (('{face}', '--workdir={workdir}', '--checkpoint=banana'),
     "--checkpoint=banana: expected 'selected', 'latest' or a step"),
    (('{face}', '--checkpoint=latest'), '--checkpoint picks a checkpoint of'),
    (('{face}', '--out={face}'), 'a file, not a folder'),
    (('{empty}',), 'no images or videos found in'),
])
def test_predict_mistakes_are_one_line(fer2013_run, tmp_path, args, message):
  _, workdir, raw = fer2013_run
  (tmp_path / 'empty').mkdir()
  names = dict(workdir=workdir, empty=tmp_path / 'empty', face=sorted(
      glob.glob(os.path.join(raw, 'train', 'happy', '*.jpg')))[0])
  status, records, stderr = _predict(
      *[a.format(**names) for a in args], '--no_detect')
  assert status == 1 and not records
  line, = stderr.strip().splitlines()
  assert message in line


def test_a_workdir_without_checkpoints_is_named(tmp_path):
  with pytest.raises(errors.MissingError, match="not a fer_jax workdir with checkpoints/"):
    predict.Predictor.load(str(tmp_path))


def test_a_video_gives_every_strided_frame_with_its_time(fer2013_run,
                                                          tmp_path):
  import cv2  # pylint: disable=g-import-not-at-top
  _, workdir, raw = fer2013_run
  face = predict.read_image(sorted(glob.glob(
      os.path.join(raw, 'train', 'happy', '*.jpg')))[0])
  path = str(tmp_path / 'clip.avi')
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 10.0,
                           (48, 48))
  for i in range(7):
    writer.write(np.roll(face, i, axis=1)[..., ::-1].copy())
  writer.release()
  predictor = predict.Predictor.load(workdir)
  records = list(predict.run(predictor, [path], detect=False,
                             out=str(tmp_path / 'out'),
                             options=video.Options(stride=3)))
  *frames, track = records
  assert [(r['frame'], r['time']) for r in frames] == [
      (0, 0.0), (3, 0.3), (6, 0.6)]
  assert all(len(r['faces']) == 1 for r in frames)
  assert sorted(os.listdir(tmp_path / 'out')) == [
      'clip.mp4', 'clip_timeline.csv', 'clip_timeline.png']
  # One face throughout: one track, its smoothed probabilities a causal
  # average (the first frame's own), its summary their mean.
  faces = [r['faces'][0] for r in frames]
  assert [f['track'] for f in faces] == [1, 1, 1]
  assert faces[0]['smoothed'] == pytest.approx(faces[0]['probabilities'])
  names = list(predictor.class_names)
  raw = np.array([[f['probabilities'][n] for n in names] for f in faces])
  assert track['type'] == 'track' and track['frames'] == 3
  assert (track['first'], track['last']) == (0.0, 0.6)
  np.testing.assert_allclose(
      [track['mean_probabilities'][n] for n in names], raw.mean(0),
      atol=1e-6)


def test_the_shipped_model_is_one_small_file_that_predicts_a_photograph():
  assert os.path.getsize(weights.SHIPPED) <= 25 << 20
  predictor = predict.Predictor.pretrained()
  assert predictor.class_names == fer2013.CLASS_NAMES
  (face,), = predictor.predict([data.astronaut()])
  assert _iou(face['box'], ASTRONAUT_FACE) >= 0.5
  assert face['label'] == 'happy'  # a broad smile


def test_every_loader_takes_a_workdir_and_its_exported_file_alike(
    fer2013_run, tmp_path):
  # weights.load is the one way in: Predictor, the LDL teacher and
  # init_from take a run's workdir and the .msgpack exported from it alike.
  config, workdir, _ = fer2013_run
  exported = str(tmp_path / 'model.msgpack')
  export.export(workdir, exported)
  from_run, from_file = weights.load(workdir), weights.load(exported)
  assert from_run.model == from_file.model
  assert from_run.expected == from_file.expected
  assert from_run.class_names == fer2013.CLASS_NAMES
  jax.tree.map(np.testing.assert_array_equal, from_run.variables,
               from_file.variables)
  faces_ = list(np.random.default_rng(0).integers(0, 256, (3, 60, 50, 3),
                                                  np.uint8))
  np.testing.assert_array_equal(
      predict.Predictor.load(workdir).probabilities(faces_),
      predict.Predictor.load(exported).probabilities(faces_))
  teachers = [teacher_lib.load(path, fer2013.CLASS_NAMES, (44, 44, 1),
                               config.data, log=lambda _: None)
              for path in (workdir, exported)]
  assert (teachers[0].identity['checksum']
          == teachers[1].identity['checksum'])
  started = config.copy_and_resolve_references()
  with started.unlocked():
    started.model.init_from = exported
  ex = experiment.Experiment(started)
  state = train.start_from(ex.initial_state(), ex.model, exported,
                           ex.replicated)
  np.testing.assert_array_equal(state.params['Conv_0']['kernel'],
                                from_file.variables['params']['Conv_0'][
                                    'kernel'])


def test_a_recorded_logit_adjustment_is_applied_by_eval_predict_and_export(
    fer2013_run, tmp_path):
  config, workdir, _ = fer2013_run
  workdir = shutil.copytree(workdir, str(tmp_path / 'run'))
  raw = predict.Predictor.load(workdir)
  record = logit_adjustment.fit(workdir, taus=(1.0,))  # tau forced to 1
  shift = np.asarray(record['logit_shift'], np.float32)
  counts = np.asarray(record['training_class_counts'], np.float64)
  np.testing.assert_allclose(shift, -np.log(counts / counts.sum()),
                             rtol=1e-6)
  config = config.copy_and_resolve_references()
  config.data.eval_splits = ('test',)
  evaluation.evaluate(config, workdir)
  with open(os.path.join(workdir, 'eval', 'test.json')) as f:
    assert json.load(f)['logit_adjustment_tau'] == 1.0
  with open(os.path.join(workdir, 'eval', 'test_predictions.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  evaluated = np.asarray([[r['probabilities'][n] for n in fer2013.CLASS_NAMES]
                          for r in rows])
  source = pipeline.get_builder('fer2013', config.data.data_dir
                                ).as_data_source('test')
  images = [source[r['index']]['image'] for r in rows]
  exported = export.export(workdir, str(tmp_path / 'model.msgpack'))
  for path in (workdir, exported):
    np.testing.assert_allclose(
        predict.Predictor.load(path).probabilities(images), evaluated,
        atol=1e-5)
  # Adjusted = softmax(log p + shift) of the unadjusted model's p.
  adjusted = np.exp(np.log(raw.probabilities(images)) + shift)
  np.testing.assert_allclose(adjusted / adjusted.sum(-1, keepdims=True),
                             evaluated, atol=1e-5)


def test_a_file_exported_before_logit_adjustment_loads_without_one(
    fer2013_run, tmp_path):
  _, workdir, _ = fer2013_run
  record = flax.serialization.msgpack_restore(
      weights.export_record(weights.load(workdir)))
  assert 'logit_shift' not in record  # as files written before it existed
  path = tmp_path / 'old.msgpack'
  path.write_bytes(flax.serialization.msgpack_serialize(record))
  loaded = weights.load(str(path))
  assert loaded.logit_shift is None and loaded.tau == 0.0
  np.testing.assert_array_equal(predict.Predictor.load(str(path)).logit_shift,
                                np.zeros(7, np.float32))


def test_an_exported_model_is_scored_under_each_shift(fer2013_run, tmp_path,
                                                      monkeypatch):
  config, workdir, _ = fer2013_run
  exported = export.export(workdir, str(tmp_path / 'model.msgpack'))
  # An identity shift must score as the stored images.
  shifts = dict(robustness.SHIFTS,
                identity=(lambda image: image, 'as stored', lambda c: False))
  monkeypatch.setattr(robustness, 'SHIFTS', shifts)
  report, = pretrained.evaluate(exported, config.data.data_dir, ('test',),
                                shifts=True).values()
  assert list(report['robustness']) == list(shifts)
  assert report['robustness']['identity']['accuracy'] == report['accuracy']
  assert report['robustness']['identity']['macro_f1'] == report['macro']['f1']
  assert report['robustness']['rotate_15']['augmented_in_training'] is False


@pytest.mark.parametrize('box, widened', [
    ((5, 60, 100, 110), False),   # near the left edge: the panel goes right
    ((150, 60, 100, 110), False),  # near the right edge: it goes left
    ((20, 30, 220, 200), True),    # the face fills the width: canvas widened
])
def test_the_probability_panel_never_covers_the_face(box, widened):
  image = np.ascontiguousarray(data.astronaut()[::2, ::2])  # 256 x 256
  names = fer2013.CLASS_NAMES
  face = {'box': list(box), 'label': 'happy',
          'probabilities': {n: 1 / len(names) for n in names}}
  out = annotate.draw(image, [face])
  assert out.shape[0] == 256 and (out.shape[1] > 256) == widened
  x, y, w, h = box
  margin = 3  # the box's outline
  np.testing.assert_array_equal(
      out[y + margin:y + h - margin, x + margin:x + w - margin],
      image[y + margin:y + h - margin, x + margin:x + w - margin])


def _two_faces_clip(path):
  """A 6 s clip at 10 frames/s built from real photographs: the astronaut's
  head (top row, moving right) and its mirror image (bottom row, moving
  left) cross on a photograph of coffee; the bottom face is away for 0.5 s
  (frames 20-24) and for 1.5 s (frames 35-49). Returns, per frame, whether
  the bottom face is shown."""
  import cv2  # pylint: disable=g-import-not-at-top
  head = data.astronaut()[20:260, 130:330]  # 240 x 200, hair to chin
  background = np.asarray(Image.fromarray(data.coffee()).resize((640, 480)))
  shown = [not (20 <= i < 25 or 35 <= i < 50) for i in range(60)]
  # Lossless (FFV1): in MJPG's artefacts the cascade finds a false face in
  # the coffee.
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'FFV1'), 10.0,
                           (640, 480))
  for i, bottom in enumerate(shown):
    frame = background.copy()
    frame[0:240, 10 + 7 * i:210 + 7 * i] = head
    if bottom:
      frame[240:480, 430 - 7 * i:630 - 7 * i] = head[:, ::-1]
    writer.write(np.ascontiguousarray(frame[..., ::-1]))
  writer.release()
  return shown


def test_a_video_gives_tracks_and_a_timeline(fer2013_run, tmp_path):
  _, workdir, _ = fer2013_run
  path = str(tmp_path / 'clip.avi')
  shown = _two_faces_clip(path)
  predictor = predict.Predictor.load(workdir)
  records = list(predict.run(
      predictor, [path], out=str(tmp_path / 'out'),
      options=video.Options(stride=1, track_gap=1.0, smooth=0.3)))
  frames = [r for r in records if 'frame' in r]
  summaries = [r for r in records if r.get('type') == 'track']
  assert len(frames) == 60
  for record, bottom in zip(frames, shown):
    ids = [f['track'] for f in sorted(record['faces'],
                                      key=lambda f: f['box'][1])]
    # The top face keeps 1 through the crossing; the bottom one keeps 2
    # across the 0.5 s gap and is a new track, 3, after the 1.5 s one.
    expected = [1] + ([2 if record['frame'] < 50 else 3] if bottom else [])
    assert ids == expected, (record['frame'], ids)
  assert [(s['track'], s['frames']) for s in summaries] == [
      (1, 60), (2, 30), (3, 10)]
  assert (summaries[1]['first'], summaries[1]['last']) == (0.0, 3.4)
  # The timeline: one CSV row per face and frame, the JSON's smoothed
  # probabilities; one PNG panel per track.
  with open(tmp_path / 'out' / 'clip_timeline.csv') as f:
    rows = list(csv.DictReader(f))
  faces_ = [(r['time'], face) for r in frames for face in r['faces']]
  assert len(rows) == len(faces_) == 100
  for row, (time, face) in zip(rows, faces_):
    assert float(row['time']) == time and int(row['track']) == face['track']
    np.testing.assert_allclose(
        [float(row[n]) for n in predictor.class_names],
        list(face['smoothed'].values()), atol=1e-5)
  with Image.open(tmp_path / 'out' / 'clip_timeline.png') as png:
    assert png.format == 'PNG' and png.size[1] > 3 * 150
  assert sorted(os.listdir(tmp_path / 'out')) == [
      'clip.mp4', 'clip_timeline.csv', 'clip_timeline.png']


def test_faces_of_several_frames_in_one_call_are_each_faces_own(
    fer2013_run, tmp_path):
  _, workdir, _ = fer2013_run
  path = str(tmp_path / 'clip.avi')
  _two_faces_clip(path)
  predictor = predict.Predictor.load(workdir)

  def run(frames_per_call, decode_ahead):
    options = video.Options(stride=3, frames_per_call=frames_per_call,
                            decode_ahead=decode_ahead)
    _, _, frames = video.open_video(path, options)
    return [(index, faces_) for index, _, _, faces_ in video.predicted_frames(
        predictor, frames, True, tracks.Tracker(1.0, 0.3), frames_per_call)]

  one, batched = run(1, False), run(8, True)
  assert [i for i, _ in one] == [i for i, _ in batched] == list(range(0, 60, 3))
  for (_, a), (_, b) in zip(one, batched):
    assert [f['box'] for f in a] == [f['box'] for f in b]
    for key in ('probabilities', 'smoothed'):
      np.testing.assert_allclose([list(f[key].values()) for f in a],
                                 [list(f[key].values()) for f in b],
                                 atol=1e-5)


def test_a_reader_that_stops_early_ends_the_decoding_thread(tmp_path):
  import threading  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / 'clip.avi')
  _two_faces_clip(path)
  before = threading.active_count()
  with within(60):
    _, _, frames = video.open_video(path, video.Options(stride=1))
    first = [index for (index, _, _), _ in zip(frames, range(3))]
    frames.close()  # with the decoder blocked on a full queue (60 > 32)
  assert first == [0, 1, 2]
  assert threading.active_count() == before
