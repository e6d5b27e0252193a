from tests.unit.serving.conftest import served

__all__ = ["served"]
