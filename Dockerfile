# groundlabel: the UI and the Label Studio ML backend on one port (7860).
#   CPU:  docker build -t groundlabel . && docker run -p 7860:7860 -v groundlabel-data:/data groundlabel
#   GPU:  docker build --build-arg TORCH_INDEX=https://pypi.org/simple -t groundlabel:gpu .
#         docker run --gpus all -p 7860:7860 -v groundlabel-data:/data groundlabel:gpu
FROM python:3.11-slim

# PyTorch's CPU wheels keep the image ~3 GB smaller than PyPI's CUDA build; torch and torchvision must come from
# the same index (a CPU torch beside PyPI's torchvision fails to import).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GROUNDLABEL_HOST=0.0.0.0 \
    PORT=7860 \
    HF_HOME=/data/huggingface \
    GROUNDLABEL_CACHE=/data/weights \
    GROUNDLABEL_STATE_DIR=/data/state

WORKDIR /app
COPY requirements.txt .
RUN pip install --index-url "$TORCH_INDEX" "torch==2.14.1" "torchvision==0.29.1" \
 && pip install -r requirements.txt

COPY app.py ./
COPY pipeline ./pipeline
COPY sync ./sync
COPY ui ./ui

RUN useradd --create-home --uid 1000 groundlabel && mkdir -p /data && chown groundlabel /data
USER groundlabel
VOLUME /data
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/health', timeout=4)"
CMD ["python", "app.py"]
