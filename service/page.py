"""The job page (`GET /jobs/<id>`): a job's state and, once it ran, its report as HTML.

A renderer over the `Report` like the Markdown and terminal views; it imports no Flask. The
check runs link here as their details URL. Images among the checks' artifacts (plots, the
spot-check gallery) are shown inline from `/jobs/<id>/artifacts/<path>`.
"""

# ruff: noqa: E501  (the page template keeps its HTML lines whole)

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import jinja2

from dlgate import render
from dlgate.report import Report
from dlgate.service.queue import Job

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_PAGE = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>dlgate · {{ job.spec.title }}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.4rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
pre{background:#f6f8fa;padding:.5rem;overflow:auto;white-space:pre-wrap}
.success,.pass{color:#1a7f37}.failure,.fail,.error,.failed{color:#cf222e}.warn{color:#9a6700}.skip,.skipped,.queued,.running{color:#59636e}
.gallery img{max-width:14rem;max-height:14rem;margin:.25rem;border:1px solid #d0d7de}
</style></head><body>
<h1>{{ job.spec.title }}</h1>
<table>
<tr><th>job</th><td>{{ job.id }} (delivery {{ job.delivery }}, {{ job.spec.event }})</td></tr>
<tr><th>state</th><td class="{{ job.state.value }}">{{ job.state.value }}{% if job.attempts %} · attempt {{ job.attempts }}{% endif %}</td></tr>
<tr><th>queued</th><td>{{ when(job.created_at) }}</td></tr>
{% if job.finished_at %}<tr><th>finished</th><td>{{ when(job.finished_at) }}</td></tr>{% endif %}
{% if job.error %}<tr><th>error</th><td><pre>{{ job.error }}</pre></td></tr>{% endif %}
</table>
{% if report %}
<h2 class="{{ report.conclusion.value }}">{{ headline }}</h2>
<p>{{ baseline }} · config: {{ report.config_source or "defaults" }} · {{ "%.1f"|format(report.duration_s) }} s</p>
{% if report.metrics %}<table><tr><th>metric</th><th>value</th></tr>
{% for k, v in report.metrics.items() %}<tr><td>{{ k }}</td><td>{{ "%.4g"|format(v) }}</td></tr>{% endfor %}
</table>{% endif %}
{% for stage in report.stages %}
<h2 id="{{ stage.name }}">{{ stage.check_name }} · <span class="{{ stage.conclusion.value }}">{{ stage.conclusion.value }}</span></h2>
<p>{{ stage.title }}</p>
<table><tr><th>check</th><th>outcome</th><th>message</th></tr>
{% for c in stage.checks %}<tr><td><code>{{ c.id }}</code></td><td class="{{ c.outcome.value }}">{{ c.outcome.value }}</td><td>{{ c.message }}
{% if c.details %}<pre>{{ c.details }}</pre>{% endif %}
{% if c.measurements %}<details><summary>measurements</summary><table>{% for k, v in c.measurements.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table></details>{% endif %}
{% if c.annotations %}<ul>{% for a in c.annotations %}<li><code>{{ a.path }}:{{ a.start_line }}</code> {{ a.message }}</li>{% endfor %}</ul>{% endif %}
{% set images = c.artifacts | select("is_image") | list %}
{% if images %}<div class="gallery">{% for name in images %}<a href="{{ artifact(name) }}"><img src="{{ artifact(name) }}" alt="{{ name }}"></a>{% endfor %}</div>{% endif %}
{% set files = c.artifacts | reject("is_image") | list %}
{% if files %}<p>{% for name in files %}<a href="{{ artifact(name) }}">{{ name }}</a> {% endfor %}</p>{% endif %}
</td></tr>{% endfor %}
</table>
{% endfor %}
{% elif job.state.value in ("queued", "running") %}<p>The gate has not finished; reload this page later.</p>
{% endif %}
{% if log %}<h2>log (last lines)</h2><pre>{{ log }}</pre>{% endif %}
</body></html>
""")
_ENV.tests["is_image"] = lambda name: str(name).lower().endswith(IMAGE_SUFFIXES)


def render_job(job: Job, artifact_url: Callable[[str], str], log: str = "") -> str:
    report = Report.from_dict(_json(job.report_json)) if job.report_json else None
    return _PAGE.render(
        job=job,
        report=report,
        headline=render.headline(report) if report else "",
        baseline=render.baseline_line(report) if report else "",
        artifact=artifact_url,
        when=_when,
        log=log,
    )


def _json(text: str) -> dict[str, object]:
    import json

    loaded: dict[str, object] = json.loads(text)
    return loaded


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
