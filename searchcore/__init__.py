"""searchcore: Chinese text-to-image search (以文搜图) with Chinese-CLIP, Milvus and a relational image store."""

__version__ = "0.1.0"
