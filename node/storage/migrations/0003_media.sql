-- 0003: the content repository (node/media). The bytes live in files under
-- DATA_DIR/media/, named by their SHA-256 (media/content/<h[0:2]>/<h[2:4]>/<h>), so
-- two uploads of the same bytes share one file and no client string ever becomes
-- part of a path. A file is fsynced and renamed into place before its row commits.

-- One row per distinct file in media/content/.
CREATE TABLE media_content (
    sha256     TEXT PRIMARY KEY,        -- lowercase hex; names the file
    size       INTEGER NOT NULL,        -- bytes
    created_ts INTEGER NOT NULL
);

-- One row per mxc://<this server>/<media_id>. POST /_matrix/media/v1/create makes a
-- row with sha256 NULL that waits for PUT /upload until unused_expires_ts.
CREATE TABLE local_media (
    media_id          TEXT PRIMARY KEY,  -- [A-Za-z0-9_-]
    user_id           TEXT NOT NULL,     -- who made it (only they may upload to it)
    created_ts        INTEGER NOT NULL,
    unused_expires_ts INTEGER,           -- pending rows only
    sha256            TEXT REFERENCES media_content(sha256),
    content_type      TEXT,              -- as uploaded; NULL: application/octet-stream
    filename          TEXT,              -- the upload's ?filename=, if any
    uploaded_ts       INTEGER
);
CREATE INDEX local_media_pending ON local_media(user_id) WHERE sha256 IS NULL;

-- Thumbnails made from one file, kept in media/thumbnails/<h[0:2]>/<h>/; a cache:
-- a row whose file is gone is made again. Keyed by the request's box and method.
CREATE TABLE media_thumbnails (
    sha256       TEXT NOT NULL REFERENCES media_content(sha256),
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    method       TEXT NOT NULL,         -- 'crop' | 'scale'
    animated     INTEGER NOT NULL,      -- 0 | 1
    content_type TEXT NOT NULL,         -- image/png, image/jpeg, image/webp, image/gif
    size         INTEGER NOT NULL,
    created_ts   INTEGER NOT NULL,
    PRIMARY KEY (sha256, width, height, method, animated)
);
