FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# PROMETHEUS_MULTIPROC_DIR (docker-compose.yml mounts the shared "prometheus" volume here).
RUN mkdir -p /tmp/prometheus
EXPOSE 8000
