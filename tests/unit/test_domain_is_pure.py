import ast
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "tracker" / "domain"
FORBIDDEN = ("flask", "sqlalchemy", "tracker.models", "tracker.services", "tracker.web")


def test_the_domain_package_imports_no_framework_or_database_code():
    offenders = []
    for path in DOMAIN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(FORBIDDEN)]
    assert offenders == []


def test_labels_import_nothing_of_the_tracker():
    labels = DOMAIN.parents[1] / "labels"
    for path in labels.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("tracker"), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("tracker") for a in node.names), path
