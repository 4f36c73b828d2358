//! The audit report as a table, CSV, JSON or a self-contained HTML page.
