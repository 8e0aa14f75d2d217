# Hark on the embedded CPU defaults, built with the same scripts the README uses.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN scripts/install.sh && rm -rf /root/.cache/pip
ENV HF_HUB_OFFLINE=1 HARK_HOST=0.0.0.0
EXPOSE 8080
CMD [".venv/bin/python", "-m", "server", "serve"]
