# PostgreSQL for the cluster, from Debian's package on cxmpute/base:bookworm (no image registry needed).
# Same contract as the usual postgres image: POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB create the first
# database and *.sql in /docker-entrypoint-initdb.d run once, when the data directory is new.
#   docker build --network host -f deploy/postgres.Dockerfile -t cxmpute/postgres:15 .
ARG BASE=cxmpute/base:bookworm
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /docker-entrypoint-initdb.d /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY deploy/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER postgres
EXPOSE 5432
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
CMD ["postgres"]
