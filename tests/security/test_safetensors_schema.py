"""Malformed .safetensors snapshot metadata (issue 9, item 2): the schema is checked and every
problem is one SnapshotError line naming the file; convert_snapshot.py prints it without a traceback."""

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from scripts import fuzz
from training import snapshot_io
from training.snapshot_io import SnapshotError

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def valid(tmp_path_factory):
    """(blob, parsed snapshot metadata) of a tiny exported snapshot."""
    path = tmp_path_factory.mktemp('st') / 'tiny.safetensors'
    snapshot_io.export_safetensors(fuzz._tiny_snapshot(), path)
    blob = path.read_bytes()
    header = json.loads(blob[8:8 + int.from_bytes(blob[:8], 'little')])
    return blob, json.loads(header['__metadata__'][snapshot_io.SAFETENSORS_METADATA_KEY])


def _edited(content: dict, edit) -> str:
    content = json.loads(json.dumps(content))
    edit(content)
    return json.dumps(content)


def _deep(levels: int, inner=1):
    for _ in range(levels):
        inner = [inner]
    return inner


def _module_spec(content):
    return content['data']['G']['__module__']


CASES = [
    ('not_json', lambda c: 'not json', 'is not valid JSON'),
    ('json_list', lambda c: '[1, 2]', 'is a JSON list, not an object'),
    ('no_data', lambda c: json.dumps({'format': c['format']}), "field 'data' is missing or not an object"),
    ('data_list', lambda c: json.dumps({'format': c['format'], 'data': []}), "field 'data' is missing"),
    ('wrong_format', lambda c: json.dumps({'format': 'other', 'data': {}}), "snapshot format 'other'"),
    ('deep_text', lambda c: '[' * 100000 + ']' * 100000, 'nests too deeply'),
    ('deep_data', lambda c: _edited(c, lambda d: d['data'].update(extra=_deep(200))), 'nest deeper than 64'),
    ('module_int', lambda c: _edited(c, lambda d: d['data'].update(G={'__module__': 3})),
     'G (__module__) holds a int, not a dict'),
    ('module_no_flags', lambda c: _edited(c, lambda d: _module_spec(d).pop('flags')), "lacks the field 'flags'"),
    ('module_tensors_str', lambda c: _edited(c, lambda d: _module_spec(d).update(tensors='abc')),
     'G.tensors (__module__) holds a str, not a list'),
    ('module_deep_kwargs', lambda c: _edited(c, lambda d: _module_spec(d).update(init_kwargs={'z_dim': _deep(20)})),
     'nest deeper than 16'),
    ('module_kwargs_list', lambda c: _edited(c, lambda d: _module_spec(d).update(init_kwargs=[1])),
     'stored keyword arguments are a list'),
    ('module_flags_bad', lambda c: _edited(c, lambda d: _module_spec(d).update(flags={'training': 7})),
     'module flags are malformed'),
    ('unknown_class', lambda c: _edited(c, lambda d: _module_spec(d).update(class_name='os.system')),
     "needs class 'os.system', which is not a registered persistent class"),
    ('set_unhashable', lambda c: _edited(c, lambda d: d['data'].update(extra={'__set__': [[1]]})), 'unhashable'),
    ('items_malformed', lambda c: _edited(c, lambda d: d['data'].update(extra={'__items__': [1, 2]})),
     'not a list of [key, value] pairs'),
    ('tensor_name_int', lambda c: _edited(c, lambda d: d['data'].update(latent_basis={'__tensor__': 5})),
     'tensor 5 named in the metadata is missing'),
    ('newline_echo', lambda c: _edited(c, lambda d: _module_spec(d).update(class_name='os\nsystem\x1b')),
     "class 'os\\nsystem\\x1b'"),
]


@pytest.mark.parametrize('name, make, expect', CASES, ids=[c[0] for c in CASES])
def test_malformed_metadata_is_one_line(valid, tmp_path, name, make, expect):
    blob, content = valid
    path = tmp_path / f'{name}.safetensors'
    path.write_bytes(fuzz._replace_metadata(blob, make(content)))
    with pytest.raises(SnapshotError) as info:
        snapshot_io.import_safetensors(path)
    text = str(info.value)
    assert '\n' not in text and str(path) in text, text
    assert expect in text, f'{expect!r} not in {text!r}'


def test_valid_file_still_loads(valid, tmp_path):
    blob, _content = valid
    path = tmp_path / 'ok.safetensors'
    path.write_bytes(fuzz._replace_metadata(blob, json.dumps(_content)))
    data = snapshot_io.import_safetensors(path)
    assert data['repurposed_dims'] == [3] and data['latent_basis'].shape == (4, 4)


def test_convert_snapshot_cli(valid, tmp_path):
    blob, content = valid
    src = tmp_path / 'bad.safetensors'
    src.write_bytes(fuzz._replace_metadata(blob, _edited(content, lambda d: d['data'].update(G={'__module__': []}))))
    result = subprocess.run([sys.executable, '-m', 'scripts.convert_snapshot', '--src', str(src),
                             '--dest', str(tmp_path / 'out.pkl')], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and 'Traceback' not in output, output
    assert 'holds a list, not a dict' in output.strip().splitlines()[-1]
    assert not (tmp_path / 'out.pkl').exists()
