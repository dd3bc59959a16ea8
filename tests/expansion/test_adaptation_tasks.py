"""Tasks (training/expansion/tasks/, training/image_transforms.py).

No pretrained network is used: CLIP is replaced by a tiny stand-in whose embeddings we can
compute by hand, LPIPS by small distances injected through SharedModels.
"""

import urllib.error

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib

from training import image_transforms
from training.expansion.tasks import (NADA, BaseTask, ClipEncoder, MyStyle, PretrainedWeightsError, SharedModels,
    TaskBatch, TaskRuntime, Transform, build_tasks, get_task_class, register_task, registered_task_types, task_arguments)
from training.expansion.config import parse_expansion_config
from training.expansion.tasks import shared_models
from training.expansion.tasks.clip_templates import IMAGENET_TEMPLATES

#----------------------------------------------------------------------------
# Stand-ins.

SOURCE_VEC = [0.8, 0.2, -0.4]       # stand-in text embedding of 'zorp' (source)
TARGET_VEC = [-0.3, 0.9, 0.5]       # stand-in text embedding of 'blick' (target)

class TinyClip:
    """CLIP-like stand-in: the image embedding is the mean colour, the text embedding a table lookup."""

    def __init__(self):
        self.table = torch.tensor([SOURCE_VEC, TARGET_VEC, [0.0, 0.0, 1.0]])
        self.texts_seen = []

    def tokenize(self, texts):
        self.texts_seen += texts
        return torch.tensor([[0 if 'zorp' in t else 1 if 'blick' in t else 2] for t in texts])

    def encode_text(self, tokens):
        return self.table[tokens[:, 0]]

    def encode_image(self, x):
        return x.mean(dim=[2, 3])

def tiny_encoder(image_size=8):
    clip = TinyClip()
    # mean = std = 0.5 maps [0, 1] back to [-1, 1], so encode_image sees the generator's values.
    return ClipEncoder(clip, clip.tokenize, image_size, mean=[0.5] * 3, std=[0.5] * 3, name='tiny'), clip

def l2_distance(x, y):
    return (x - y).square().mean(dim=[1, 2, 3])

def make_runtime(models=None, w_dim=8, resolution=8):
    models = models if models is not None else SharedModels('cpu')
    return TaskRuntime(device=torch.device('cpu'), z_dim=6, w_dim=w_dim, img_resolution=resolution, img_channels=3,
        models=models)

def constant_images(colour, n=1, size=8):
    return torch.tensor(colour, dtype=torch.float32).reshape(1, 3, 1, 1).repeat(n, 1, size, size)

def unit(v):
    v = torch.as_tensor(v, dtype=torch.float32)
    return v / v.norm()

#----------------------------------------------------------------------------
# Image transforms.

def test_grayscale_is_invariant_under_channel_permutation():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    gray = image_transforms.grayscale(x)
    torch.testing.assert_close(image_transforms.grayscale(x[:, [2, 0, 1]]), gray)
    torch.testing.assert_close(gray[:, 0], x.mean(dim=1))
    assert torch.equal(gray[:, 0], gray[:, 2])

def test_negative_is_an_involution_and_flips_are_mirrors():
    x = torch.rand(2, 3, 5, 7) * 2 - 1
    assert torch.equal(image_transforms.negative(image_transforms.negative(x)), x)
    assert torch.equal(image_transforms.hflip(image_transforms.hflip(x)), x)
    assert torch.equal(image_transforms.vflip(image_transforms.vflip(x)), x)
    assert torch.equal(image_transforms.hflip(x)[..., 0], x[..., -1])
    assert torch.equal(image_transforms.vflip(x)[..., 0, :], x[..., -1, :])

def test_hue_shift_by_120_degrees_maps_red_to_green():
    red = constant_images([1.0, -1.0, -1.0])
    torch.testing.assert_close(image_transforms.hue_shift(red, 120), constant_images([-1.0, 1.0, -1.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(image_transforms.hue_shift(red, 240), constant_images([-1.0, -1.0, 1.0]), atol=1e-6, rtol=0)

def test_hue_shift_is_a_rotation_about_the_gray_axis():
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    gray = constant_images([0.3, 0.3, 0.3])
    torch.testing.assert_close(image_transforms.hue_shift(gray, 37), gray)
    torch.testing.assert_close(image_transforms.hue_shift(x, 360), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(image_transforms.hue_shift(image_transforms.hue_shift(x, 50), 40),
        image_transforms.hue_shift(x, 90), atol=1e-6, rtol=0)
    R = image_transforms.hue_rotation_matrix(90)
    torch.testing.assert_close(R @ R.mT, torch.eye(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(image_transforms.hue_shift(x, 90).norm(dim=1), x.norm(dim=1), atol=1e-5, rtol=0)
    torch.testing.assert_close(image_transforms.hue_shift(x, 90).mean(dim=1), x.mean(dim=1), atol=1e-6, rtol=0)
    assert image_transforms.get_transform('hue_shift')(x).allclose(image_transforms.hue_shift(x, 90))

def test_edges_of_a_constant_image_are_white_and_a_step_is_a_dark_line():
    assert torch.equal(image_transforms.edges(constant_images([0.2, -0.7, 0.5], size=9)), torch.ones(1, 3, 9, 9))
    step = -torch.ones(1, 3, 8, 8)
    step[..., 4:] = 1                                   # black left half, white right half
    sketch = image_transforms.edges(step)
    assert sketch.shape == step.shape and sketch.min() >= -1 and sketch.max() <= 1
    assert torch.all(sketch[..., 3:5] == -1)            # the columns beside the step are black
    assert torch.all(sketch[..., :2] == 1) and torch.all(sketch[..., 6:] == 1)

def test_unknown_transform_and_misplaced_degrees():
    with pytest.raises(ValueError, match='known transforms: grayscale, negative, hflip, vflip, hue_shift, edges'):
        image_transforms.get_transform('sepia')
    with pytest.raises(ValueError, match='degrees only applies'):
        image_transforms.get_transform('negative', degrees=10)

#----------------------------------------------------------------------------
# Registry and the base interface.

def test_registry():
    assert registered_task_types() == ['MyStyle', 'NADA', 'Transform']
    assert get_task_class('Transform') is Transform
    assert get_task_class('training.adaptation_tasks.NADA') is NADA
    spec = task_arguments(Transform)
    assert spec.required == ('transform',) and spec.optional == {'degrees': None, 'name': None}
    assert 'runtime' not in task_arguments(MyStyle).names and 'dimension' not in task_arguments(NADA).names
    with pytest.raises(ValueError, match='already registered'):
        register_task(type('Transform', (BaseTask,), {}))
    with pytest.raises(TypeError, match='not a BaseTask subclass'):
        register_task(int)

def test_settings_are_per_instance():
    runtime = make_runtime()
    a = Transform('hflip', dimension=7, runtime=runtime)
    b = Transform('hue_shift', degrees=30, name='warm', dimension=6, runtime=runtime)
    assert (a.name, a.transform_name, a.dimension) == ('hflip', 'hflip', 7)
    assert (b.name, b.degrees, b.slug) == ('warm', 30, 'warm')
    assert not hasattr(Transform, 'transform_name') and not hasattr(Transform, 'degrees')

def test_default_sampling_and_eval_latents():
    task = Transform('negative', dimension=7, runtime=make_runtime())
    batch = task.sample(5, 'cpu', torch.Generator().manual_seed(3))
    assert batch.w is None and batch.z.shape == (5, 6) and len(batch) == 5 and batch.context is None
    assert torch.equal(batch.z, task.sample(5, 'cpu', torch.Generator().manual_seed(3)).z)
    fixed = task.eval_latents(4, seed=1234)
    assert torch.equal(fixed.z, torch.from_numpy(np.random.RandomState(1234).randn(4, 6).astype(np.float32)))
    with pytest.raises(ValueError, match='exactly one of z and w'):
        TaskBatch()

#----------------------------------------------------------------------------
# Transform.

def test_transform_loss_is_sum_of_per_image_means_and_gradients_reach_edit_only():
    task = Transform('grayscale', dimension=7, runtime=make_runtime())
    base = torch.randn(3, 3, 8, 8, requires_grad=True)
    edit = torch.randn(3, 3, 8, 8, requires_grad=True)
    target = image_transforms.grayscale(base.detach())
    expected = (edit.detach() - target).square().mean(dim=[1, 2, 3])
    torch.testing.assert_close(task.error(None, base, edit), expected)
    loss = task.loss(None, base, edit)
    torch.testing.assert_close(loss, expected.sum())
    loss.backward()
    assert base.grad is None and edit.grad.abs().sum() > 0
    assert task.loss(None, base.detach(), target) == 0

#----------------------------------------------------------------------------
# NADA with the CLIP stand-in.

def nada_runtime(image_size=8):
    models = SharedModels('cpu')
    encoder, clip = tiny_encoder(image_size)
    models.register_clip('ViT-B/32', encoder)
    models.register_clip('ViT-B/16', encoder)
    return make_runtime(models), clip

def test_nada_text_direction_averages_all_templates():
    runtime, clip = nada_runtime()
    task = NADA('zorp', 'blick', clip_models=['ViT-B/32'], dimension=7, runtime=runtime)
    assert task.name == 'blick'
    assert len(clip.texts_seen) == 2 * len(IMAGENET_TEMPLATES) == 160
    torch.testing.assert_close(task.text_directions[0], unit(unit(TARGET_VEC) - unit(SOURCE_VEC)))

@pytest.mark.parametrize('image_size', [8, 4])   # 4: the stand-in resizes the 8x8 images first
def test_nada_loss_is_zero_along_the_text_direction_and_two_against_it(image_size):
    runtime, _ = nada_runtime(image_size)
    task = NADA('zorp', 'blick', clip_models=['ViT-B/32'], dimension=7, runtime=runtime)
    source, target = constant_images(SOURCE_VEC, n=2), constant_images(TARGET_VEC, n=2)
    torch.testing.assert_close(task.error(None, source, target), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(task.error(None, target, source), torch.full([2], 2.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(task.loss(None, target, source), torch.tensor(4.0), atol=1e-5, rtol=0)

def test_nada_weights_and_gradients():
    runtime, _ = nada_runtime()
    task = NADA('zorp', 'blick', clip_models=['ViT-B/32', 'ViT-B/16'], clip_model_weights=[1.0, 0.5],
        dimension=7, runtime=runtime)
    source, target = constant_images(SOURCE_VEC), constant_images(TARGET_VEC)
    torch.testing.assert_close(task.error(None, target, source), torch.tensor([3.0]), atol=1e-6, rtol=0)
    base = torch.rand(2, 3, 8, 8).mul(2).sub(1).requires_grad_(True)
    edit = torch.rand(2, 3, 8, 8).mul(2).sub(1).requires_grad_(True)
    task.loss(None, base, edit).backward()
    assert base.grad is None and edit.grad.abs().sum() > 0

def test_nada_batched_errors_equal_per_task_errors_with_one_pass_per_model():
    runtime, _ = nada_runtime()
    tasks = [NADA('zorp', 'blick', clip_models=['ViT-B/32'], dimension=7, runtime=runtime),
             NADA('blick', 'zorp', clip_models=['ViT-B/32'], dimension=6, runtime=runtime)]
    items = [(task, None, torch.rand(n, 3, 8, 8) * 2 - 1, torch.rand(n, 3, 8, 8) * 2 - 1)
             for task, n in zip(tasks, (2, 3))]
    expected = [task.error(None, base, edit) for task, _, base, edit in items]
    encoder = runtime.models.clip('ViT-B/32')
    calls = []
    original = encoder.encode_images
    encoder.encode_images = lambda images: calls.append(images.shape[0]) or original(images)
    try:
        errors = NADA.batched_errors(items)
    finally:
        encoder.encode_images = original
    for got, want in zip(errors, expected):
        torch.testing.assert_close(got, want)
    assert calls == [5, 5]   # base and edit images of both domains, one pass each

def test_nada_image_guided(tmp_path):
    colour = [1.0, 51 / 127.5 - 1, -1.0]                 # exactly representable in 8-bit PNG
    for i in range(2):
        PIL.Image.new('RGB', (12 + i, 10), (255, 51, 0)).save(tmp_path / f't{i}.png')
    runtime, _ = nada_runtime()
    task = NADA(target_images_dir=str(tmp_path), clip_models=['ViT-B/32'], dimension=7, runtime=runtime)
    assert task.name == tmp_path.name
    source = constant_images(SOURCE_VEC, n=3)
    torch.testing.assert_close(task.error(None, source, constant_images(colour, n=3)), torch.zeros(3), atol=1e-5, rtol=0)
    other = [0.1, -0.2, 0.9]
    expected = 1 - torch.dot(unit(unit(other) - unit(SOURCE_VEC)), unit(unit(colour) - unit(SOURCE_VEC)))
    torch.testing.assert_close(task.error(None, source, constant_images(other, n=3)), expected.expand(3), atol=1e-5, rtol=0)
    assert 0.1 < expected < 1.9

def test_clip_names_map_to_open_clip():
    assert shared_models.open_clip_spec('ViT-B/32') == ('ViT-B-32', 'openai')
    assert shared_models.open_clip_spec('ViT-L/14@336px') == ('ViT-L-14-336', 'openai')
    assert shared_models.open_clip_spec('ViT-B-32:laion2b_s34b_b79k') == ('ViT-B-32', 'laion2b_s34b_b79k')
    with pytest.raises(ValueError, match="unknown CLIP model 'ViT-B-32'"):
        shared_models.open_clip_spec('ViT-B-32')

def test_offline_clip_error_is_one_clear_line(monkeypatch, tmp_path):
    open_clip = pytest.importorskip('open_clip')
    seen = {}
    def offline(*args, **kwargs):
        seen.update(kwargs, arch=args[0])
        raise RuntimeError("Failed to download weights for tag 'openai': no connection\nsecond line")
    monkeypatch.setattr(open_clip, 'create_model_and_transforms', offline)
    monkeypatch.setattr(dnnlib.util, 'url_reachable', lambda url: True)  # the hub "answers"; the load fails
    with pytest.raises(PretrainedWeightsError) as info:
        SharedModels('cpu', clip_cache_dir=str(tmp_path)).clip('ViT-B/16')
    message = str(info.value)
    assert '\n' not in message
    assert "CLIP model 'ViT-B/16' (open_clip 'ViT-B-16', pretrained='openai')" in message
    assert str(tmp_path) in message and 'create_model_and_transforms' in message
    # OpenAI weights need QuickGELU, which open_clip does not switch on by itself.
    assert seen['arch'] == 'ViT-B-16' and seen['pretrained'] == 'openai' and seen['force_quick_gelu'] is True

def test_clip_models_are_loaded_once_and_shared(monkeypatch):
    calls = []
    def fake_loader(name, device, cache_dir=None):
        calls.append(name)
        return tiny_encoder()[0]
    monkeypatch.setattr(shared_models, 'load_open_clip', fake_loader)
    runtime = make_runtime(SharedModels('cpu'))
    tasks = [NADA('zorp', target, clip_models=['ViT-B/32'], dimension=d, runtime=runtime)
        for d, target in [(7, 'blick'), (6, 'blick two')]]
    assert calls == ['ViT-B/32'] and tasks[0].encoders[0] is tasks[1].encoders[0]

#----------------------------------------------------------------------------
# MyStyle.

@pytest.fixture
def person(tmp_path):
    """Three 8x8 photos with anchors in the three accepted layouts (w_dim 8)."""
    images, anchors = tmp_path / 'ann_photos', tmp_path / 'anchors'
    images.mkdir()
    anchors.mkdir()
    colours = {'a': (255, 0, 0), 'b': (0, 255, 0), 'c': (0, 0, 255)}
    for stem, rgb in colours.items():
        PIL.Image.new('RGB', (8, 8), rgb).save(images / f'{stem}.png')
    torch.save(torch.full([8], 1.0), anchors / 'a.pt')                       # W [w_dim]
    np.save(anchors / 'b.npy', np.full([1, 8], 2.0, dtype=np.float32))        # W [1, w_dim]
    torch.save(torch.full([5, 8], 3.0), anchors / 'c.pth')                   # constant W+ [num_ws, w_dim]
    return images, anchors

def mystyle_runtime(distance=l2_distance, resolution=8):
    models = SharedModels('cpu')
    models.register_perceptual('alex', distance)
    return make_runtime(models, resolution=resolution)

def test_mystyle_loads_pairs_and_samples_matching_context(person):
    images, anchors = person
    task = MyStyle(str(images), str(anchors), dimension=4, runtime=mystyle_runtime())
    assert task.name == 'ann_photos' and task.stems == ['a', 'b', 'c']
    assert task.anchors[:, 0].tolist() == [1.0, 2.0, 3.0] and task.photos.shape == (3, 3, 8, 8)
    batch = task.sample(16, 'cpu', torch.Generator().manual_seed(0))
    assert batch.z is None and batch.w.shape == (16, 8) and batch.context.shape == (16, 3, 8, 8)
    for w, photo in zip(batch.w, batch.context):
        index = int(w[0].item()) - 1            # anchor value 1, 2, 3 <-> photo a, b, c
        assert torch.equal(photo, task.photos[index])
    assert len(set(batch.w[:, 0].tolist())) > 1
    fixed = task.eval_latents(9)
    assert len(fixed) == 3 and torch.equal(fixed.context, task.photos)  # fewer photos than a 9-image grid

def test_mystyle_loss_is_perceptual_plus_weighted_l2(person):
    images, anchors = person
    net = torch.nn.Conv2d(3, 4, 3)                     # a tiny random "perceptual" network
    def perceptual(x, y):
        return (net(x) - net(y)).square().mean(dim=[1, 2, 3])
    task = MyStyle(str(images), str(anchors), person_name='ann', l2_weight=0.25, dimension=4,
        runtime=mystyle_runtime(perceptual))
    assert task.name == 'ann'
    photos = task.photos
    edit = torch.randn(3, 3, 8, 8, requires_grad=True)
    base = torch.randn(3, 3, 8, 8, requires_grad=True)
    expected = perceptual(edit, photos) + 0.25 * (edit - photos).square().mean(dim=[1, 2, 3])
    torch.testing.assert_close(task.error(photos, base, edit), expected)
    task.loss(photos, base, edit).backward()
    assert base.grad is None and edit.grad.abs().sum() > 0
    torch.testing.assert_close(task.error(photos, base, photos), torch.zeros(3))

@pytest.mark.parametrize('damage, message', [
    (lambda i, a: (a / 'c.pth').unlink(), 'anchors_dir: no anchor for image(s) c'),
    (lambda i, a: torch.save(torch.zeros(8), a / 'd.pt'), 'images_dir: no image for anchor(s) d'),
    (lambda i, a: torch.save(torch.randn(5, 8), a / 'c.pth'), 'W+ latent with rows that differ'),
    (lambda i, a: torch.save(torch.zeros(7), a / 'c.pth'), 'is not a W latent [8]'),
    (lambda i, a: PIL.Image.new('RGB', (16, 16)).save(i / 'b.png'), 'is 16x16, but the generator makes 8x8 images'),
    (lambda i, a: [p.unlink() for p in i.iterdir()], 'no images'),
])
def test_mystyle_errors(person, damage, message):
    images, anchors = person
    damage(images, anchors)
    with pytest.raises(ValueError) as info:
        MyStyle(str(images), str(anchors), dimension=4, runtime=mystyle_runtime())
    assert message in str(info.value) and '\n' not in str(info.value)
    raw = {'tasks': [{'type': 'MyStyle', 'args': {'images_dir': str(images), 'anchors_dir': str(anchors)}}]}
    with pytest.raises(ValueError) as info:      # the config check finds it before anything is built
        parse_expansion_config(raw, 8, img_resolution=8)
    assert message in str(info.value)

def test_lpips_random_backbone_works_offline():
    distance = SharedModels('cpu', lpips_random_backbone=True).perceptual('alex')
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    d = distance(x, x.flip(3))
    assert d.shape == (2,) and torch.all(d > 0)
    torch.testing.assert_close(distance(x, x), torch.zeros(2))
    assert SharedModels('cpu', lpips_random_backbone=True).lpips_backbone() == 'random-init (offline)'
    # The random backbone is the same in every process (fixed seed), whatever the global RNG state.
    torch.manual_seed(123)
    again = SharedModels('cpu', lpips_random_backbone=True).perceptual('alex')
    torch.testing.assert_close(again(x, x.flip(3)), d, rtol=0, atol=0)

def test_lpips_builds_without_torchvision_deprecation_noise():
    """The lpips package passes torchvision's deprecated `pretrained=`; the demo's console stays clean."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        SharedModels('cpu', lpips_random_backbone=True).perceptual('alex')
    assert not [w for w in caught if 'torchvision' in w.filename], [str(w.message) for w in caught]

def test_offline_lpips_error_names_the_weights_file(monkeypatch):
    lpips = pytest.importorskip('lpips')
    def offline(*args, **kwargs):
        raise urllib.error.URLError('Name or service not known')
    monkeypatch.setattr(lpips, 'LPIPS', offline)
    with pytest.raises(PretrainedWeightsError, match=r"LPIPS backbone 'alex' .*checkpoints/alexnet-owt-7be5be79\.pth"):
        SharedModels('cpu').perceptual('alex')

#----------------------------------------------------------------------------
# build_tasks from a config.

def test_build_tasks_follows_config_order(person):
    images, anchors = person
    raw = {'tasks': [
        {'type': 'Transform', 'args': {'transform': 'hue_shift', 'degrees': 120}},
        {'type': 'NADA', 'dimension': 2, 'args': {'source_text': 'zorp', 'target_text': 'blick'}},
        {'type': 'MyStyle', 'args': {'images_dir': str(images), 'anchors_dir': str(anchors), 'name': 'Ann B.'}},
    ], 'tasks_losses': {'NADA': {'clip_models': ['ViT-B/32']}, 'MyStyle': {'l2_weight': 0.5}}}
    cfg = parse_expansion_config(raw, 8, img_resolution=8)
    runtime, _ = nada_runtime()
    runtime.models.register_perceptual('alex', l2_distance)
    tasks = build_tasks(cfg, 'cpu', runtime.models, z_dim=6, img_resolution=8)
    assert [type(t) for t in tasks] == [Transform, NADA, MyStyle]
    assert [t.dimension for t in tasks] == cfg.repurposed_dims == [7, 2, 6]
    assert [t.name for t in tasks] == ['hue_shift', 'blick', 'Ann B.'] and tasks[2].slug == 'ann_b'
    assert tasks[2].l2_weight == 0.5 and tasks[0].degrees == 120
    red = constant_images([1.0, -1.0, -1.0])
    assert tasks[0].loss(None, red, constant_images([-1.0, 1.0, -1.0])) < 1e-10
    assert 'dimension=2' in repr(tasks[1])

#----------------------------------------------------------------------------
