# One image for every ledger service; compose.yaml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
ENV LEDGER_HOST=0.0.0.0 \
    LEDGER_MIGRATIONS_DIR=/app/migrations \
    LEDGER_LOG_FORMAT=json
EXPOSE 8081 8082
CMD ["ledger", "--help"]
