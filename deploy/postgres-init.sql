-- The platform and the Prefect server keep separate databases on the same PostgreSQL.
CREATE DATABASE prefect OWNER cxmpute;
