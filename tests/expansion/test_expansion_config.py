"""Expansion config (training/expansion/config.py): official shapes, dimension assignment, errors."""

import json
import textwrap

import pytest
import torch

import legacy
from conftest import REPO_ROOT, require_fixtures
from training.expansion.config import ExpansionConfigError, load_expansion_config, parse_expansion_config

OFFICIAL_NADA = {
    'tasks': [
        {'type': 'NADA', 'dimension': 510, 'args': {'source_text': 'photo', 'target_text': 'sketch'}},
        {'type': 'NADA', 'args': {'source_text': 'person', 'target_text': 'tolkein elf'}},
    ],
    'tasks_losses': {'NADA': {'clip_models': ['ViT-B/32', 'ViT-B/16'], 'clip_model_weights': [1.0, 1.0]}},
}

def transform_task(transform='grayscale', **extra):
    return {'type': 'Transform', 'args': {'transform': transform, **extra}}

def problems_of(cfg, w_dim=512, **kwargs) -> list:
    with pytest.raises(ExpansionConfigError) as info:
        parse_expansion_config(cfg, w_dim, **kwargs)
    message = str(info.value)
    assert message.splitlines() == info.value.problems
    return info.value.problems

def single_problem(cfg, w_dim=512, **kwargs) -> str:
    problems = problems_of(cfg, w_dim, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]

@pytest.fixture
def mystyle_dirs(tmp_path):
    import PIL.Image
    images, anchors = tmp_path / 'images', tmp_path / 'anchors'
    images.mkdir()
    anchors.mkdir()
    for stem in ['a', 'b']:
        PIL.Image.new('RGB', (16, 16), (200, 10, 10)).save(images / f'{stem}.png')
        torch.save(torch.randn(8), anchors / f'{stem}.pt')
    return str(images), str(anchors)

#----------------------------------------------------------------------------
# Valid configs.

def test_official_nada_example_loads_unchanged():
    cfg = parse_expansion_config(OFFICIAL_NADA, 512)
    assert cfg.repurposed_dims == [510, 511]        # official README: the elf takes 511
    assert cfg.task_names == ['sketch', 'tolkein elf']
    assert cfg.tasks[0].kwargs() == {'source_text': 'photo', 'target_text': 'sketch',
        'clip_models': ['ViT-B/32', 'ViT-B/16'], 'clip_model_weights': [1.0, 1.0]}

def test_official_mystyle_shape_loads(mystyle_dirs):
    images, anchors = mystyle_dirs
    raw = {'tasks': [{'type': 'MyStyle', 'dimension': 5, 'args': {'person_name': 'ann', 'images_dir': images,
        'anchors_dir': anchors}}], 'tasks_losses': {'MyStyle': {'l2_weight': 0.5}}}
    cfg = parse_expansion_config(raw, 8, img_resolution=16)
    assert cfg.repurposed_dims == [5] and cfg.task_names == ['ann']
    assert cfg.tasks[0].kwargs()['l2_weight'] == 0.5

def test_empty_config_is_valid():
    cfg = parse_expansion_config({}, 512)
    assert cfg.tasks == () and cfg.repurposed_dims == []
    assert parse_expansion_config({'tasks': [], 'tasks_losses': {}}, 512).repurposed_dims == []

def test_hundred_tasks_get_511_down_to_412():
    raw = {'tasks': [transform_task(name=f'domain_{i}') for i in range(100)]}
    cfg = parse_expansion_config(raw, 512)
    assert cfg.repurposed_dims == list(range(511, 411, -1))

def test_unassigned_tasks_skip_taken_dimensions_in_task_order():
    raw = {'tasks': [transform_task('grayscale'), transform_task('negative', name='neg'),
        {'type': 'Transform', 'dimension': 511, 'args': {'transform': 'hflip'}},
        {'type': 'Transform', 'dimension': 509, 'args': {'transform': 'vflip'}}, transform_task('edges')]}
    assert parse_expansion_config(raw, 512).repurposed_dims == [510, 508, 511, 509, 507]

def test_to_json_fills_dimensions_and_round_trips():
    cfg = parse_expansion_config(OFFICIAL_NADA, 512)
    saved = json.loads(cfg.to_json())
    assert [task['dimension'] for task in saved['tasks']] == [510, 511]
    assert saved['tasks_losses'] == OFFICIAL_NADA['tasks_losses']
    assert 'dimension' not in OFFICIAL_NADA['tasks'][1]     # the caller's dict is untouched
    again = parse_expansion_config(saved, 512)
    assert again.repurposed_dims == cfg.repurposed_dims and again.task_names == cfg.task_names

def test_file_round_trip(tmp_path):
    path = tmp_path / 'cfg.json'
    path.write_text(json.dumps({'tasks': [transform_task('hflip')]}))
    cfg = load_expansion_config(str(path), 16)
    cfg.save(str(tmp_path / 'saved.json'))
    assert json.loads((tmp_path / 'saved.json').read_text())['tasks'][0] == {'type': 'Transform', 'dimension': 15,
        'args': {'transform': 'hflip'}}

def test_snapshot_expansion_cfg_loads():
    snapshot = legacy.load_network_pkl(str(require_fixtures('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')))
    cfg = parse_expansion_config(snapshot['expansion_cfg'], snapshot['G_ema'].w_dim, check_resources=False)
    assert cfg.repurposed_dims == snapshot['repurposed_dims'].tolist() == [31, 30]

@pytest.mark.parametrize('name', ['nada.json', 'mystyle.json', 'transform.json', 'mixed.json'])
def test_config_examples_parse(name):
    cfg = load_expansion_config(str(REPO_ROOT / 'config_examples' / name), 512, check_resources=False)
    assert len(cfg.tasks) >= 1 and len(set(cfg.repurposed_dims)) == len(cfg.tasks)

def test_dotted_path_to_user_task(tmp_path, monkeypatch):
    (tmp_path / 'user_tasks_for_test.py').write_text(textwrap.dedent('''
        from training.expansion.tasks import BaseTask
        class Sketchy(BaseTask):
            def __init__(self, strength, name=None, *, dimension, runtime):
                super().__init__(name=self.resolve_name(dict(name=name)), dimension=dimension, runtime=runtime)
                self.strength = strength
            @classmethod
            def default_name(cls, kwargs):
                return 'sketchy'
        class NotATask:
            pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = parse_expansion_config({'tasks': [{'type': 'user_tasks_for_test.Sketchy', 'args': {'strength': 2}}]}, 8)
    assert cfg.task_names == ['sketchy'] and cfg.tasks[0].task_class.__name__ == 'Sketchy'
    problems = problems_of({'tasks': [{'type': 'user_tasks_for_test.Sketchy', 'args': {'strengh': 2}}]}, 8)
    assert 'tasks[0].args.strengh: unknown argument for Sketchy; accepted: strength, name' in problems[0]
    assert 'tasks[0].args.strength: missing' in problems[1]
    message = single_problem({'tasks': [{'type': 'user_tasks_for_test.NotATask', 'args': {}}]}, 8)
    assert 'not a subclass of training.adaptation_tasks.BaseTask' in message

#----------------------------------------------------------------------------
# One problem -> one line naming the key.

def test_unknown_type_lists_registered_types():
    message = single_problem({'tasks': [{'type': 'Nada', 'args': {}}]})
    assert 'tasks[0].type' in message and "'Nada'" in message
    assert 'MyStyle, NADA, Transform' in message

def test_dotted_path_that_fails_to_import():
    message = single_problem({'tasks': [{'type': 'no_such_pkg.tasks.Sketch', 'args': {}}]})
    assert 'tasks[0].type' in message and "cannot import module 'no_such_pkg.tasks'" in message

def test_duplicate_dimension():
    raw = {'tasks': [{'type': 'Transform', 'dimension': 7, 'args': {'transform': 'hflip'}},
        {'type': 'Transform', 'dimension': 7, 'args': {'transform': 'vflip'}}]}
    message = single_problem(raw, 8)
    assert 'tasks[1].dimension: 7 is already used by tasks[0]' in message

@pytest.mark.parametrize('dimension, text', [(8, 'out of range'), (-1, 'out of range'), (3.0, 'must be an integer'),
    (True, 'must be an integer'), ('5', 'must be an integer')])
def test_bad_dimension(dimension, text):
    message = single_problem({'tasks': [{'type': 'Transform', 'dimension': dimension, 'args': {'transform': 'hflip'}}]}, 8)
    assert 'tasks[0].dimension' in message and text in message and '[0, 7]' in message

def test_missing_argument():
    message = single_problem({'tasks': [{'type': 'Transform', 'args': {}}]})
    assert 'tasks[0].args.transform: missing' in message

def test_unknown_argument_in_args_and_in_tasks_losses():
    message = single_problem({'tasks': [{'type': 'NADA', 'args': {'source_text': 'a', 'target_txt': 'b'}}]})
    assert 'tasks[0].args.target_txt: unknown argument for NADA' in message and 'target_text' in message
    raw = {'tasks': OFFICIAL_NADA['tasks'], 'tasks_losses': {'NADA': {'clip_model': ['ViT-B/32']}}}
    message = single_problem(raw)
    assert 'tasks_losses.NADA.clip_model: unknown argument' in message

def test_unknown_type_in_tasks_losses():
    message = single_problem({'tasks': [transform_task()], 'tasks_losses': {'Nada': {}}})
    assert message.endswith("tasks_losses.Nada: unknown task type 'Nada'; registered types: MyStyle, NADA, Transform "
        '(or give a dotted path to your own BaseTask subclass, e.g. my_pkg.tasks.MyTask)')

def test_argument_given_twice():
    raw = {'tasks': [{'type': 'MyStyle', 'args': {'images_dir': 'x', 'anchors_dir': 'y', 'l2_weight': 1}}],
        'tasks_losses': {'MyStyle': {'l2_weight': 2}}}
    message = single_problem(raw, check_resources=False)
    assert 'tasks[0].args.l2_weight: also given in tasks_losses.MyStyle' in message

def test_clip_weight_list_length_mismatch():
    raw = {'tasks': OFFICIAL_NADA['tasks'], 'tasks_losses': {'NADA': {'clip_models': ['ViT-B/32', 'ViT-B/16'],
        'clip_model_weights': [1.0]}}}
    message = single_problem(raw)     # reported once, although both tasks share it
    assert 'tasks_losses.NADA.clip_model_weights: has 1 weights but clip_models has 2 entries' in message

def test_unknown_clip_model():
    raw = {'tasks': OFFICIAL_NADA['tasks'][:1], 'tasks_losses': {'NADA': {'clip_models': ['ViT-B/33']}}}
    assert "tasks_losses.NADA.clip_models: unknown CLIP model 'ViT-B/33'" in single_problem(raw)

def test_nada_needs_exactly_one_target(tmp_path):
    message = single_problem({'tasks': [{'type': 'NADA', 'args': {'source_text': 'photo'}}]})
    assert 'tasks[0]: give exactly one of args.target_text' in message
    message = single_problem({'tasks': [{'type': 'NADA', 'args': {'target_text': 'sketch'}}]})
    assert 'tasks[0].args.source_text: is required' in message

def test_missing_directories(tmp_path):
    message = single_problem({'tasks': [{'type': 'NADA', 'args': {'target_images_dir': str(tmp_path / 'nope')}}]})
    assert 'tasks[0].args.target_images_dir: directory not found' in message
    message = single_problem({'tasks': [{'type': 'NADA', 'args': {'target_images_dir': str(tmp_path)}}]})
    assert 'tasks[0].args.target_images_dir: no images' in message
    problems = problems_of({'tasks': [{'type': 'MyStyle', 'args': {'images_dir': str(tmp_path / 'i'),
        'anchors_dir': str(tmp_path / 'a')}}]})
    assert [p.split(': ')[1] for p in problems] == ['tasks[0].args.images_dir', 'tasks[0].args.anchors_dir']
    assert all('directory not found' in p for p in problems)

def test_mystyle_resource_checks(mystyle_dirs, tmp_path):
    images, anchors = mystyle_dirs
    raw = {'tasks': [{'type': 'MyStyle', 'args': {'images_dir': images, 'anchors_dir': anchors}}]}
    message = single_problem(raw, 8, img_resolution=32)
    assert 'tasks[0].args.images_dir' in message and 'is 16x16' in message and '32x32' in message
    assert message.endswith('(1 more file(s) with problems)')
    message = single_problem(raw, 16, img_resolution=16)
    assert 'tasks[0].args.anchors_dir' in message and 'w_dim 16' in message
    assert parse_expansion_config(raw, 16, check_resources=False).task_names == ['images']

def test_unknown_transform_lists_known_ones():
    message = single_problem({'tasks': [transform_task('sepia')]})
    assert "tasks[0].args.transform: unknown transform 'sepia'; known transforms: grayscale, negative, hflip, vflip, " \
        'hue_shift, edges' in message

def test_degrees_only_for_hue_shift():
    message = single_problem({'tasks': [transform_task('negative', degrees=30)]})
    assert 'tasks[0].args.degrees: only applies to transform hue_shift' in message

def test_duplicate_task_names():
    message = single_problem({'tasks': [transform_task('hflip'), transform_task('hflip')]})
    assert "tasks[1]: task name 'hflip' is already used by tasks[0]; set args.name" in message

def test_top_level_structure_errors():
    assert 'tasks: must be a list' in single_problem({'tasks': {'type': 'Transform'}})
    assert 'task: unknown key; valid keys: tasks, tasks_losses' in single_problem({'task': []})
    assert 'tasks[0].dim: unknown key' in single_problem({'tasks': [{'type': 'Transform', 'dim': 3,
        'args': {'transform': 'hflip'}}]})
    assert 'tasks[0].type: missing' in single_problem({'tasks': [{'args': {}}]})
    assert 'must be a JSON object' in single_problem([])

def test_too_many_tasks():
    raw = {'tasks': [transform_task(name=f'd{i}') for i in range(8)]}
    assert 'tasks: 8 tasks but w_dim is 8' in single_problem(raw, 8)

def test_all_problems_are_reported_together():
    raw = {'tasks': [{'type': 'Nope'}, transform_task('sepia'), {'type': 'Transform', 'dimension': 99,
        'args': {'transform': 'hflip'}}]}
    problems = problems_of(raw, 16)
    assert len(problems) == 3
    assert all(p.startswith('expansion config: tasks[') for p in problems)

def test_file_errors_name_the_flag(tmp_path):
    with pytest.raises(ExpansionConfigError, match='--expansion_cfg_file .*nope.json: file not found'):
        load_expansion_config(str(tmp_path / 'nope.json'), 512)
    bad = tmp_path / 'bad.json'
    bad.write_text('{"tasks": [\n  {"type": "NADA",}\n]}')
    with pytest.raises(ExpansionConfigError, match='bad.json: invalid JSON at line 2, column 19'):
        load_expansion_config(str(bad), 512)
    cfg_path = tmp_path / 'cfg.json'
    cfg_path.write_text(json.dumps({'tasks': [transform_task('sepia')]}))
    with pytest.raises(ExpansionConfigError, match=r'^--expansion_cfg_file .*cfg.json: tasks\[0\].args.transform'):
        load_expansion_config(str(cfg_path), 512)

#----------------------------------------------------------------------------
