"""The house rules of README's Layout section, read from the code's imports (inside functions too):
no import circle between files, each layer imports only the layers it may, a small root, no file
over 800 lines outside tests."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 800

# The root: the design card's files, the references' augmentation.py / train_avd.py, and the commands.
ROOT_FILES = {'run.py', 'train.py', 'reconstruction.py', 'animate.py', 'demo.py', 'logger.py',
              'frames_dataset.py', 'augmentation.py', 'train_avd.py', 'app.py', 'crop_video.py',
              'evaluate.py', 'prepare_dataset.py'}

# What each library package (or data file) may import of the project, as README's table says.
# Names are top-level units: a package or a root module.
MAY_IMPORT = {
    'media': set(),
    'modules': set(),
    'loading': {'modules'},
    'scoring': set(),
    'faces': {'media', 'modules', 'scoring'},
    'bodies': {'media', 'modules', 'faces', 'scoring'},
    'deploy': {'media', 'modules'},
    'synthetic': {'media'},
    'animation': {'faces', 'bodies', 'media', 'modules'},
    'dataprep': {'media'},
    'frames_dataset': {'media', 'augmentation'},
    'augmentation': set(),
    'logger': {'media', 'modules'},
    'sync_batchnorm': set(),
}
JOBS = {'run', 'train', 'train_avd', 'reconstruction', 'animate', 'demo', 'app', 'crop_video', 'evaluate',
        'prepare_dataset'}


def project_files() -> list[Path]:
    """Every .py file of the project outside tests, benchmarks, scripts and the virtualenv."""
    skip = {'tests', 'benchmarks', 'scripts', 'docs', 'build'}
    return sorted(p for p in ROOT.rglob('*.py')
                  if not (set(p.relative_to(ROOT).parts[:-1]) & skip)
                  and not any(part.startswith('.') or part.endswith('.egg-info') for part in p.relative_to(ROOT).parts))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def imported_modules(path: Path, known: set[str], name: str | None = None) -> set[str]:
    """Project modules `path` imports anywhere in its body (resolving relative imports)."""
    name = name or module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.') if package else []
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = '.'.join(anchor + ([base] if base else []))
            # `from pkg import sub` imports pkg.sub when sub is a module
            targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in known else base for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition('.')[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope='module')
def graph() -> dict[str, set[str]]:
    files = project_files()
    known = {module_name(p) for p in files}
    return {module_name(p): imported_modules(p, known) for p in files}


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (a list of names, first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle(graph):
    # An import of a package means its __init__, which is followed like any file.
    circle = find_circle(graph)
    assert circle is None, 'import circle: ' + ' -> '.join(circle)


def test_no_import_circle_among_benchmarks():
    """Benchmarks import one another by bare name (their folder is on sys.path)."""
    files = sorted((ROOT / 'benchmarks').glob('*.py'))
    names = {p.stem for p in files}
    graph = {}
    for p in files:
        graph[p.stem] = imported_modules(p, names, name=p.stem)
    circle = find_circle(graph)
    assert circle is None, 'import circle: ' + ' -> '.join(circle)


def top(name: str) -> str:
    return name.split('.')[0]


def test_layers_import_only_what_they_may(graph):
    wrong = []
    for name, imports in sorted(graph.items()):
        layer = top(name)
        if layer in JOBS:
            continue
        allowed = MAY_IMPORT.get(layer)
        assert allowed is not None, f'{name}: a new package or root file; give it a row in README\'s Layout and here'
        for target in sorted(imports):
            if top(target) != layer and top(target) not in allowed:
                wrong.append(f'{name} imports {target}')
    assert not wrong, 'layer rule broken (README, Layout): ' + '; '.join(wrong)


def test_root_holds_the_design_card_and_the_commands():
    found = {p.name for p in ROOT.glob('*.py')}
    assert found <= ROOT_FILES, f'library code at the root, put it in a package: {sorted(found - ROOT_FILES)}'
    assert len(found) <= 13


def test_no_file_over_800_lines():
    long = [f'{p.relative_to(ROOT)} ({n} lines)' for p in project_files() + sorted((ROOT / 'benchmarks').glob('*.py'))
            + sorted((ROOT / 'scripts').glob('*.py')) if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, 'split these: ' + ', '.join(long)


def test_scanner_sees_imports_inside_functions(tmp_path):
    """The scan counts an import inside a function (the kind that hid animate.py <-> demo.py)."""
    f = tmp_path / 'x.py'
    f.write_text('def g():\n    from demo import DemoError\n    import media.reading\n')
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert imported_modules(f, {'x', 'demo', 'media', 'media.reading'}) == {'demo', 'media.reading'}
    finally:
        ROOT = saved


def test_animation_start_up_does_not_load_compile_machinery():
    """torchvision and torch._dynamo cost a process 1.5-1.7 s to import, and animating with a FOMM
    model needs neither: they load where a network needs them (TPSMM's ResNet, VGG-19, compiling a
    discriminator), not at import."""
    import subprocess
    import sys
    code = ('import sys; from animate import Animator; from loading import load_config; from modules import build_models; '
            'from deploy import int8; c = load_config("config/fomm/vox-256.yaml"); Animator(c, build_models(c)); '
            'print(sorted(m for m in ("torchvision", "torch._dynamo") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'
