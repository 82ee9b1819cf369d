-- The users table: the integration contract for hosting panels
-- (documented in docs/configuration.md). One row per login.
CREATE TABLE ftp_users (
  login                            text PRIMARY KEY,
  password_hash                    text,
  home_path                        text    NOT NULL DEFAULT '/',
  base_path                        text,
  permissions                      jsonb   NOT NULL
                                   DEFAULT '[{"path": "/", "readable": true, "writable": true}]',
  maximum_connections              integer,
  read_speed_limit                 bigint,
  write_speed_limit                bigint,
  read_speed_limit_per_connection  bigint,
  write_speed_limit_per_connection bigint,
  disabled                         boolean NOT NULL DEFAULT false
);
