# tfsfast with the container contract of TensorFlow Serving's image (tensorflow/serving):
# ports 8500 (gRPC) and 8501 (REST), MODEL_BASE_PATH=/models, MODEL_NAME=model, and
# /usr/bin/tf_serving_entrypoint.sh running
#   tensorflow_model_server --port=8500 --rest_api_port=8501 --model_name=${MODEL_NAME}
#       --model_base_path=${MODEL_BASE_PATH}/${MODEL_NAME} "$@"
# so `docker run ... tfsfast --enable_batching` appends flags exactly as with TF Serving.
#
# Unlike TF Serving's image: the server runs as a non-root user (uid 1000), is PID 1 so that
# `docker stop` drains it, the image carries no compiler, sources, tests or pip cache, and the
# build fails if a compiled module is missing instead of serving with the pure-Python twins.
#
#   docker build -t tfsfast .
#   docker build --build-arg BASE_IMAGE=my-registry/debian:bookworm-slim -t tfsfast .
#
# Dockerfile.gpu is the same image with TensorFlow's CUDA wheels.

ARG BASE_IMAGE=debian:bookworm-slim

# --- build: compile the Cython modules against the TensorFlow they will run with ---------------
FROM ${BASE_IMAGE} AS build
# tensorflow-cpu: the same TensorFlow without the CUDA kernels, 600 MB less installed than the
# `tensorflow` wheel. Dockerfile.gpu sets tensorflow[and-cuda].
ARG TENSORFLOW_PACKAGE=tensorflow-cpu
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc g++ \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/tfsfast
ENV PATH=/opt/tfsfast/bin:$PATH
WORKDIR /src
COPY requirements.txt ./
# requirements.txt names `tensorflow`; the image installs ${TENSORFLOW_PACKAGE} in the same
# version range instead, and tensorflow-serving-api (whose only other requirements, grpcio and
# protobuf, come with the rest) without its dependency on `tensorflow`, which would install the
# full wheel beside it.
RUN set -eu; \
    tf_range=$(sed -n 's/^tensorflow\([<>=!~].*\)$/\1/p' requirements.txt); \
    api_range=$(sed -n 's/^tensorflow-serving-api\([<>=!~].*\)$/\1/p' requirements.txt); \
    test -n "$tf_range" && test -n "$api_range"; \
    pip install "${TENSORFLOW_PACKAGE}${tf_range}"; \
    pip install --no-deps "tensorflow-serving-api${api_range}"; \
    grep -vE '^tensorflow(-serving-api)?[<>=!~]' requirements.txt > /tmp/requirements-rest.txt; \
    pip install -r /tmp/requirements-rest.txt
COPY README.md pyproject.toml setup.py ./
COPY csrc csrc
COPY tfsfast tfsfast
# The build tools go into the venv only for the build and leave it afterwards, with TensorFlow's
# C headers (290 MB that only a compiler reads).
RUN pip install "cython>=3.0" "setuptools>=68" wheel \
    && pip install --no-deps --no-build-isolation . \
    && pip uninstall -y cython setuptools wheel \
    && rm -r /opt/tfsfast/lib/python3*/site-packages/tensorflow/include \
    && cd / && python -m tfsfast.check_extensions

# --- the image ----------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 tfsfast \
    && useradd --uid 1000 --gid 1000 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin tfsfast \
    && mkdir -p /models
COPY --from=build /opt/tfsfast /opt/tfsfast
COPY deploy/docker/tf_serving_entrypoint.sh /usr/bin/tf_serving_entrypoint.sh
# TF Serving's path, which KServe's TensorFlow runtime calls directly.
RUN ln -s /opt/tfsfast/bin/tensorflow_model_server /usr/bin/tensorflow_model_server
ENV PATH=/opt/tfsfast/bin:$PATH \
    MODEL_BASE_PATH=/models \
    MODEL_NAME=model \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 8500 8501
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
ENTRYPOINT ["/usr/bin/tf_serving_entrypoint.sh"]
