"""Imports point down the layers of DESIGN.md, read from every module's AST (imports
inside functions included)."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# package -> layer; a module may import its own layer's packages (acyclically) or lower ones
LAYERS = {
    "configs": 0, "data_pipelines": 0,
    "vocalnet_jax.models": 1, "vocalnet_jax.diffusion": 1, "vocalnet_jax.speech": 1,
    "vocalnet_jax.modeling": 2,
    "vocalnet_jax.training": 3, "vocalnet_jax.decoding": 3,
    "vocalnet_jax.evaluation": 4, "vocalnet_jax.distill": 4, "vocalnet_jax.serving": 4,
    "vocalnet_jax.diagnostics": 4,
    "launch": 5,
}
SIBLINGS = [("vocalnet_jax.training", "vocalnet_jax.decoding")]


def _package(module: str):
  """The LAYERS package a dotted module name belongs to (None: third-party)."""
  for pkg in sorted(LAYERS, key=len, reverse=True):
    if module == pkg or module.startswith(pkg + "."):
      return pkg
  return None


def _imports(path: str, module: str) -> set[str]:
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: resolve against this module's package
        parent = module.rsplit(".", node.level)[0]
        base = f"{parent}.{base}" if base else parent
      names.add(base)
      names.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
  return names


def _edges() -> set[tuple[str, str, str]]:
  """(importing package, imported package, importing file) over every first-party module."""
  edges = set()
  for top in ("configs", "data_pipelines", "vocalnet_jax", "launch"):
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
      for name in files:
        if not name.endswith(".py"):
          continue
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        module = rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
        src = _package(module)
        if src is None:
          continue
        for imported in _imports(path, module):
          dst = _package(imported)
          if dst is not None and dst != src:
            edges.add((src, dst, os.path.relpath(path, ROOT)))
  return edges


EDGES = _edges()


def test_the_walk_sees_the_known_imports():
  assert ("vocalnet_jax.decoding", "vocalnet_jax.modeling", "vocalnet_jax/decoding/speech_io.py") \
      in EDGES
  assert ("vocalnet_jax.training", "data_pipelines", "vocalnet_jax/training/tasks.py") in EDGES


@pytest.mark.parametrize("upper", ["vocalnet_jax.decoding", "vocalnet_jax.evaluation",
                                   "vocalnet_jax.serving"])
def test_inference_never_imports_training(upper):
  bad = sorted(f for s, d, f in EDGES if s == upper and d == "vocalnet_jax.training")
  assert not bad, bad


def test_imports_point_down():
  bad = sorted(f"{f}: {s} -> {d}" for s, d, f in EDGES if LAYERS[d] > LAYERS[s])
  assert not bad, bad
  for a, b in SIBLINGS:
    assert not [f for s, d, f in EDGES if {s, d} == {a, b}]


def test_no_import_cycle_between_packages():
  graph = {}
  for s, d, _ in EDGES:
    graph.setdefault(s, set()).add(d)
  state = {}  # package -> "open" while on the DFS stack, "done" after

  def visit(pkg, path):
    state[pkg] = "open"
    for nxt in sorted(graph.get(pkg, ())):
      assert state.get(nxt) != "open", " -> ".join(path + [nxt])
      if nxt not in state:
        visit(nxt, path + [nxt])
    state[pkg] = "done"

  for pkg in sorted(graph):
    if pkg not in state:
      visit(pkg, [pkg])


def test_task_registry_names_task_classes():
  """TASKS is the one table of tasks; its entries are imported by name, so check each
  resolves to a `Task` (the distillation task is the one entry above training)."""
  import importlib
  from vocalnet_jax.training import tasks
  for name, target in tasks.TASKS.items():
    module, cls = target.split(":")
    assert LAYERS[_package(module)] >= LAYERS["vocalnet_jax.training"], name
    assert issubclass(getattr(importlib.import_module(module), cls), tasks.Task), name
