FROM python:3.13-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# An unprivileged user runs every process; it owns what they write: collected static files and
# PROMETHEUS_MULTIPROC_DIR (docker-compose.yml mounts the shared "prometheus" volume there).
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /tmp/prometheus /app/staticfiles \
    && chown app /tmp/prometheus /app/staticfiles
USER app
EXPOSE 8000
