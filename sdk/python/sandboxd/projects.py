"""Projects, and plans made from an intent: ``client.projects``.

A project is a host directory under the daemon's workspace roots (or a repository) with the
defaults its runs inherit and the API keys that may use it. Admins create, change and delete
projects; a submitter sees those naming it in ``members``; reviewers and admins see them all.
The daemon's planner turns an intent ("run the tests and give me a report", "运行测试并生成报告")
into a plan of steps with the project's own tooling, each with the command policy's decision;
a plan is immutable (``sha256``) and a run of it goes through review like any other run.
"""

from ._http import seg
from .client import Run, _Resource


def _ref(project):
    """A project's id from a Project, a Plan's project, or an id or name as given."""
    if isinstance(project, Project):
        return project.id
    return project


class Projects:
    def __init__(self, client):
        self._client = client
        self._t = client._t

    def create(self, name, *, root_path=None, repo=None, default_limits=None,
               default_workspace_mode=None, labels=None, members=None):
        """POST /v1/projects (an admin's key). ``root_path``: a directory under the daemon's
        workspace roots; ``members``: API key names (each a configured key) that may use it.
        Raises AlreadyExists for a name taken, InvalidArgument for a bad field or an unknown
        member, PermissionDenied for another role or a directory outside the roots."""
        body = {"name": name, "root_path": root_path, "repo": repo,
                "default_limits": default_limits,
                "default_workspace_mode": default_workspace_mode, "labels": labels,
                "members": list(members) if members is not None else None}
        body = {k: v for k, v in body.items() if v is not None}
        return Project(self._client, self._t.json("POST", "/v1/projects", body=body))

    def get(self, project):
        """A project by id or name. NotFound also for one this key may not see."""
        return Project(self._client, self._t.json("GET", "/v1/projects/" + seg(_ref(project))))

    def list(self, *, limit=None):
        """Every project this key may see, oldest first (pages fetched as needed)."""
        cursor = None
        while True:
            page = self._t.json("GET", "/v1/projects", query={"limit": limit, "cursor": cursor})
            for p in page.get("projects", []):
                yield Project(self._client, p)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def update(self, project, *, version=None, **fields):
        """PATCH /v1/projects/{id} (an admin's key): the ``fields`` given (those of ``create``)
        replace the project's. With ``version``, only while the project is still at that
        version: FailedPrecondition (409) when it moved on. Returns it, one version on."""
        body = {k: v for k, v in fields.items() if v is not None}
        if "members" in body:
            body["members"] = list(body["members"])
        if version is not None:
            body["version"] = version
        return Project(self._client, self._t.json(
            "PATCH", "/v1/projects/" + seg(_ref(project)), body=body))

    def delete(self, project):
        """Deletes a project and its plans (an admin's key); its runs stay, with its id.
        Returns the deleted project's id."""
        return self._t.json("DELETE", "/v1/projects/" + seg(_ref(project)))["deleted"]

    # -- plans -------------------------------------------------------------------------------

    def plan(self, project, intent_text):
        """POST /v1/projects/{id}/plans: the daemon's planner reads the project's directory and
        plans the intent (English or Chinese). Returns the Plan, nothing run yet. Raises NotFound
        when it plans nothing for it ("no plan for this intent": another action such as deploy
        or delete, or tooling the project lacks; the message says what it looked for), and
        InvalidArgument for an empty or oversized intent."""
        return Plan(self._client, self._t.json(
            "POST", "/v1/projects/%s/plans" % seg(_ref(project)),
            body={"intent_text": intent_text}))

    def get_plan(self, plan_id):
        """GET /v1/plans/{id}. NotFound for a plan of a project this key may not see."""
        return Plan(self._client, self._t.json("GET", "/v1/plans/" + seg(plan_id)))

    def list_plans(self, project, *, limit=None):
        """The project's plans, newest first (a list)."""
        page = self._t.json("GET", "/v1/projects/%s/plans" % seg(_ref(project)),
                            query={"limit": limit})
        return [Plan(self._client, p) for p in page.get("plans", [])]

    def run_plan(self, project, plan_id, idempotency_key=None):
        """POST /v1/projects/{id}/runs {"plan_id"}: a run of the plan exactly as it is (its
        steps, limits, workspace and labels, plus the labels ``plan`` and ``plan_sha256``),
        which goes to the review gate like any run. With an ``idempotency_key`` the request is
        retried safely, and the same key answers the same run."""
        if isinstance(plan_id, Plan):
            plan_id = plan_id.id
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Run(self._client, self._t.json(
            "POST", "/v1/projects/%s/runs" % seg(_ref(project)), body={"plan_id": plan_id},
            headers=headers))


class Project(_Resource):
    """A project. Methods act with the client that fetched it."""

    @property
    def name(self):
        return self.data["name"]

    @property
    def version(self):
        return self.data["version"]

    @property
    def members(self):
        return list(self.data.get("members") or [])

    def __repr__(self):
        return "Project(id=%r, name=%r, version=%r)" % (
            self.data.get("id"), self.data.get("name"), self.data.get("version"))

    def refresh(self):
        self.data = self._client.projects.get(self.id).data
        return self

    def update(self, **fields):
        """Changes this project against the version it was read at (FailedPrecondition when
        it moved on since: ``refresh()`` and decide again)."""
        self.data = self._client.projects.update(self.id, version=self.version, **fields).data
        return self

    def delete(self):
        return self._client.projects.delete(self.id)

    def plan(self, intent_text):
        return self._client.projects.plan(self.id, intent_text)

    def plans(self, *, limit=None):
        return self._client.projects.list_plans(self.id, limit=limit)

    def run_plan(self, plan_id, idempotency_key=None):
        return self._client.projects.run_plan(self.id, plan_id, idempotency_key)

    def runs(self, *, state=None, label=None, limit=None):
        """The project's runs this key may see, newest first."""
        return self._client.runs.list(state=state, label=label, limit=limit, project=self.id)


class Plan(_Resource):
    """A plan made from an intent: ``steps`` ([{"name", "argv", "why", "decision"}]), the
    whole plan's policy ``decision``, ``summary``, ``goals``, ``limits``, ``workspace``,
    ``labels`` and its ``sha256``."""

    @property
    def project_id(self):
        return self.data["project_id"]

    @property
    def sha256(self):
        return self.data["sha256"]

    @property
    def steps(self):
        return self.data["steps"]

    @property
    def decision(self):
        """The command policy's decision on the whole plan: "allow", "review" or "deny"."""
        return self.data["decision"]["decision"]

    @property
    def summary(self):
        return self.data["summary"]

    def __repr__(self):
        return "Plan(id=%r, project_id=%r, steps=%r)" % (
            self.data.get("id"), self.data.get("project_id"),
            [s.get("argv") for s in self.data.get("steps", [])])

    def run(self, idempotency_key=None):
        """A run of this plan (``projects.run_plan``)."""
        return self._client.projects.run_plan(self.project_id, self.id, idempotency_key)
