# 以文搜图: the app (Gradio UI + JSON API) and the `searchcore` CLI on CPU. See docs/DEPLOY.md.
#   docker build -t searchcore .
#   docker run -p 7860:7860 -v models:/models -e SEARCHCORE_MILVUS_URI=http://milvus:19530 ... searchcore
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# OCR (rapidocr) imports OpenCV, which needs libGL and GLib; the slim image has neither.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

# CPU-only PyTorch first, from PyTorch's CPU index: the default index ships CUDA wheels (GBs larger).
# `pip install .` then finds torch already satisfied. Same pins as the Makefile.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1

# Dependencies change less often than code: install the package, then add the app.
COPY pyproject.toml README.md ./
COPY searchcore ./searchcore
RUN pip install . \
    && useradd --create-home --uid 1000 searchcore \
    && mkdir /models \
    && chown searchcore /models
COPY app.py ./

USER searchcore
# Model weights live in a volume: downloaded by cn_clip on the first start, reused afterwards.
ENV SEARCHCORE_MODEL_DIR=/models
VOLUME ["/models"]
EXPOSE 7860

# In a container the app must listen on every interface; search only unless the command says otherwise.
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860", "--read-only"]
