{#-
  target-tiktok-audiences' identifier rules (target_tiktok_audiences/identifiers.py) as SQL.

  Every macro gives what the target gives for the same raw value, or NULL where SQL cannot be
  exact: a value the target rejects, and also some it accepts (non-ASCII emails, phones in
  national or spaced formats: they need Unicode case rules and phonenumbers' metadata).
  docs/warehouse-hashing.md lists them; tests/test_warehouse_sql.py proves the rest equal to
  the target's own encoder in PostgreSQL and DuckDB. sql/*/tiktok_identifiers.sql are these
  macros rendered as plain functions (scripts/render-warehouse-sql).

  The engine-specific pieces are dispatched (strip, full match, SHA-256); the rules are written
  once. Arguments are SQL expressions of type text (a column name, a literal in quotes).
-#}

{#- Python's str.strip() removes the characters str.isspace() holds: these 29 code points. -#}
{% macro tiktok_whitespace() -%}
{{ adapter.dispatch('tiktok_whitespace', 'tiktok_audiences')() }}
{%- endmacro %}

{% macro postgres__tiktok_whitespace() -%}
E'\u0009\u000a\u000b\u000c\u000d\u001c\u001d\u001e\u001f\u0020\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000'
{%- endmacro %}

{#- DuckDB's strings have no escapes for code points. -#}
{% macro duckdb__tiktok_whitespace() -%}
(chr(9) || chr(10) || chr(11) || chr(12) || chr(13) || chr(28) || chr(29) || chr(30) || chr(31) || chr(32) || chr(133) || chr(160) || chr(5760) || chr(8192) || chr(8193) || chr(8194) || chr(8195) || chr(8196) || chr(8197) || chr(8198) || chr(8199) || chr(8200) || chr(8201) || chr(8202) || chr(8232) || chr(8233) || chr(8239) || chr(8287) || chr(12288))
{%- endmacro %}

{% macro tiktok_strip(expr) -%}
{{ adapter.dispatch('tiktok_strip', 'tiktok_audiences')(expr) }}
{%- endmacro %}

{% macro postgres__tiktok_strip(expr) -%}
btrim({{ expr }}, {{ tiktok_audiences.tiktok_whitespace() }})
{%- endmacro %}

{% macro duckdb__tiktok_strip(expr) -%}
trim({{ expr }}, {{ tiktok_audiences.tiktok_whitespace() }})
{%- endmacro %}

{#- Whether the whole of expr matches pattern (a pattern both engines read alike). -#}
{% macro tiktok_full_match(expr, pattern) -%}
{{ adapter.dispatch('tiktok_full_match', 'tiktok_audiences')(expr, pattern) }}
{%- endmacro %}

{% macro postgres__tiktok_full_match(expr, pattern) -%}
({{ expr }} ~ '^(?:{{ pattern }})$')
{%- endmacro %}

{% macro duckdb__tiktok_full_match(expr, pattern) -%}
regexp_full_match({{ expr }}, '{{ pattern }}')
{%- endmacro %}

{% macro tiktok_sha256_hex(expr) -%}
{{ adapter.dispatch('tiktok_sha256_hex', 'tiktok_audiences')(expr) }}
{%- endmacro %}

{% macro postgres__tiktok_sha256_hex(expr) -%}
encode(sha256(convert_to({{ expr }}, 'UTF8')), 'hex')
{%- endmacro %}

{% macro duckdb__tiktok_sha256_hex(expr) -%}
sha256({{ expr }})
{%- endmacro %}

{#- Another engine stops here, at compile time: it has not been proven exact. -#}
{% macro default__tiktok_whitespace() -%}{{ tiktok_audiences.tiktok_unsupported() }}{%- endmacro %}
{% macro default__tiktok_strip(expr) -%}{{ tiktok_audiences.tiktok_unsupported() }}{%- endmacro %}
{% macro default__tiktok_full_match(expr, pattern) -%}{{ tiktok_audiences.tiktok_unsupported() }}{%- endmacro %}
{% macro default__tiktok_sha256_hex(expr) -%}{{ tiktok_audiences.tiktok_unsupported() }}{%- endmacro %}

{% macro tiktok_unsupported() -%}
{{ exceptions.raise_compiler_error("tiktok_audiences: only PostgreSQL and DuckDB are supported (the engines its digests are proven exact in), not " ~ target.type) }}
{%- endmacro %}

{#- ASCII letters only: lower() follows the database's locale (Turkish 'I'), Python's does not. -#}
{% macro tiktok_lower_ascii(expr) -%}
translate({{ expr }}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
{%- endmacro %}

{#- The target rejects a raw value longer than this many characters before anything else. -#}
{% macro tiktok_short_enough(expr) -%}
length({{ expr }}) <= 4096
{%- endmacro %}

{#-
  The normalised email, or NULL. basic: trim, lowercase; one '@', a non-empty local part, a dot
  in the domain, no whitespace or control character. tiktok: also the local part without its
  '+suffix' and dots. Only ASCII addresses: Python lowercases other scripts by Unicode rules
  (U+212A KELVIN SIGN becomes 'k') that SQL engines do not share.
-#}
{% macro tiktok_email(expr, email_normalization='basic') -%}
{%- if email_normalization not in ('basic', 'tiktok') -%}
{{ exceptions.raise_compiler_error("tiktok_email: email_normalization is 'basic' or 'tiktok', not '" ~ email_normalization ~ "'") }}
{%- endif -%}
{%- set stripped = tiktok_audiences.tiktok_strip(expr) -%}
{%- set email = tiktok_audiences.tiktok_lower_ascii(stripped) -%}
{#- Printable ASCII without '@' and space: '!'-'?' and 'A'-'~'. -#}
{%- set valid = tiktok_audiences.tiktok_full_match(stripped, '[!-?A-~]+@[!-?A-~]*[.][!-?A-~]*') -%}
{%- if email_normalization == 'basic' -%}
(CASE WHEN {{ tiktok_audiences.tiktok_short_enough(expr) }} AND {{ valid }} THEN {{ email }} END)
{%- else -%}
{%- set local = "replace(split_part(split_part(" ~ email ~ ", '@', 1), '+', 1), '.', '')" -%}
(CASE WHEN {{ tiktok_audiences.tiktok_short_enough(expr) }} AND {{ valid }} AND {{ local }} <> '' THEN {{ local }} || '@' || split_part({{ email }}, '@', 2) END)
{%- endif -%}
{%- endmacro %}

{#-
  The phone in E.164 with '+', or NULL. Exact for a value already in E.164 syntax ('+', then
  8-15 digits, the first 1-9), taken as is like the target does, and, with
  default_phone_region US or CA, for North American numbers written with or without a leading
  1 and the separators " -.()" ("(415) 555-0134"). Anything else needs phonenumbers: NULL.
-#}
{% macro tiktok_phone(expr, default_phone_region=none) -%}
{%- set region = (default_phone_region or '').strip().upper() -%}
{%- set stripped = tiktok_audiences.tiktok_strip(expr) -%}
{%- set digits = "translate(" ~ stripped ~ ", ' -.()', '')" -%}
(CASE WHEN {{ tiktok_audiences.tiktok_short_enough(expr) }} THEN CASE WHEN {{ tiktok_audiences.tiktok_full_match(stripped, '[+][1-9][0-9]{7,14}') }} THEN {{ stripped }}
{%- if region in ('US', 'CA') %} WHEN {{ tiktok_audiences.tiktok_full_match(digits, '1?[2-9][0-9]{9}') }} THEN '+1' || right({{ digits }}, 10){% endif %} END END)
{%- endmacro %}

{#- The IDFA or GAID as a lowercase UUID, or NULL (also for the all-zero id). -#}
{% macro tiktok_ad_id(expr) -%}
{%- set ad_id = tiktok_audiences.tiktok_lower_ascii(tiktok_audiences.tiktok_strip(expr)) -%}
(CASE WHEN {{ tiktok_audiences.tiktok_short_enough(expr) }} AND {{ tiktok_audiences.tiktok_full_match(ad_id, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}') }} AND {{ ad_id }} <> '00000000-0000-0000-0000-000000000000' THEN {{ ad_id }} END)
{%- endmacro %}

{#-
  The digest the target sends for contract (EMAIL_SHA256, PHONE_SHA256, IDFA_SHA256, IDFA_MD5,
  GAID_SHA256, GAID_MD5; AAID_* as GAID_*), or NULL. Give the target's own settings.
-#}
{% macro tiktok_digest(expr, contract, email_normalization='basic', default_phone_region=none) -%}
{%- set name = contract.strip().upper().replace('AAID_', 'GAID_') -%}
{%- if name == 'EMAIL_SHA256' -%}
{{ tiktok_audiences.tiktok_sha256_hex(tiktok_audiences.tiktok_email(expr, email_normalization)) }}
{%- elif name == 'PHONE_SHA256' -%}
{{ tiktok_audiences.tiktok_sha256_hex(tiktok_audiences.tiktok_phone(expr, default_phone_region)) }}
{%- elif name in ('IDFA_SHA256', 'GAID_SHA256') -%}
{{ tiktok_audiences.tiktok_sha256_hex(tiktok_audiences.tiktok_ad_id(expr)) }}
{%- elif name in ('IDFA_MD5', 'GAID_MD5') -%}
md5({{ tiktok_audiences.tiktok_ad_id(expr) }})
{%- else -%}
{{ exceptions.raise_compiler_error("tiktok_digest: unknown contract '" ~ contract ~ "'; use EMAIL_SHA256, PHONE_SHA256, IDFA_SHA256, IDFA_MD5, GAID_SHA256 or GAID_MD5") }}
{%- endif -%}
{%- endmacro %}

{% macro tiktok_email_sha256(expr, email_normalization='basic') -%}
{{ tiktok_audiences.tiktok_digest(expr, 'EMAIL_SHA256', email_normalization=email_normalization) }}
{%- endmacro %}

{% macro tiktok_phone_sha256(expr, default_phone_region=none) -%}
{{ tiktok_audiences.tiktok_digest(expr, 'PHONE_SHA256', default_phone_region=default_phone_region) }}
{%- endmacro %}

{% macro tiktok_idfa_sha256(expr) -%}{{ tiktok_audiences.tiktok_digest(expr, 'IDFA_SHA256') }}{%- endmacro %}
{% macro tiktok_idfa_md5(expr) -%}{{ tiktok_audiences.tiktok_digest(expr, 'IDFA_MD5') }}{%- endmacro %}
{% macro tiktok_gaid_sha256(expr) -%}{{ tiktok_audiences.tiktok_digest(expr, 'GAID_SHA256') }}{%- endmacro %}
{% macro tiktok_gaid_md5(expr) -%}{{ tiktok_audiences.tiktok_digest(expr, 'GAID_MD5') }}{%- endmacro %}
