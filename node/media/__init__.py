"""The content repository: uploads, downloads and thumbnails.

Spec: content/client-server-api/modules/content_repo.md, api/client-server/
content-repo.yaml and authed-content-repo.yaml. ``mxc`` parses and makes media IDs,
``store`` keeps the files and their rows, ``thumbnails`` scales images (Pillow,
imported only when a thumbnail is asked for), ``disposition`` computes the
download headers, and ``service`` ties them together for the handlers in
``node/client_api/media.py``.
"""
