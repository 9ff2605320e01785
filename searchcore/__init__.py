"""searchcore: Chinese text-to-image search (以文搜图) with Chinese-CLIP, Milvus and a relational image store."""

from searchcore.config import Settings
from searchcore.errors import SearchcoreError

__all__ = ["Settings", "SearchcoreError", "__version__"]
__version__ = "0.1.0"
