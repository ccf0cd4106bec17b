// A copy-on-write run's changes: what it would write into the host directory, and writing it
// on a reviewer's word (Review::ApplyChanges).
#include <fmt/format.h>

#include "api/v1/node_proxy.h"
#include "api/v1/route_util.h"
#include "api/v1/run_routes.h"

namespace sbx::api {
namespace {

Reply Fail(const Error& e) { return ErrorResponse(e); }


// Paths, what happens to each and sizes; never a hash of a host file (a hash of a secret is a
// way to guess it).
nlohmann::json ChangeSetJson(const supervisor::ChangeSet& set) {
  nlohmann::json entries = nlohmann::json::array();
  for (const supervisor::ChangeEntry& e : set.entries) {
    nlohmann::json j = {
        {"path", e.path}, {"op", supervisor::ChangeOpName(e.op)}, {"host", supervisor::ChangeBaseKindName(e.base.kind)}};
    if (e.op == supervisor::ChangeEntry::Op::kWrite ||
        e.op == supervisor::ChangeEntry::Op::kMakeDir) {
      j["mode"] = fmt::format("{:04o}", e.mode);
    }
    if (e.op == supervisor::ChangeEntry::Op::kWrite) j["size"] = e.size;
    if (e.base.changed_during_run) j["changed_on_host_during_run"] = true;
    entries.push_back(std::move(j));
  }
  nlohmann::json refused = nlohmann::json::array();
  for (const auto& r : set.refused) refused.push_back({{"path", r.path}, {"why", r.why}});
  return {{"entries", std::move(entries)},
          {"refused", std::move(refused)},
          {"total_bytes", set.total_bytes}};
}

}  // namespace

Status AddChangeRoutes(Router& router, const RouteContext& ctx) {
  const RouteContext c = ctx;
  SBX_TRY(router.Add(Method::kGet, "/v1/runs/{id}/changes", Access::kSubmitter,
                     [c](const Request& req) -> Reply {
                       auto run = VisibleRun(c, req);
                       if (!run.ok()) return Fail(run.error());
                       // Its changes are kept by the node that ran it.
                       if (auto there = ForwardToOwner(c, req, *run)) return std::move(*there);
                       auto kept = c.runs->Changes(run->id);
                       if (!kept.ok()) return Fail(kept.error());
                       nlohmann::json j = ChangeSetJson(kept->changes);
                       j["run_id"] = run->id;
                       j["diff_sha256"] = kept->diff_sha256;
                       j["applicable"] = kept->changes.refused.empty() && kept->applied.is_null() &&
                                         run->state == store::RunState::kSucceeded;
                       j["applied"] = kept->applied;
                       return JsonResponse(200, j);
                     }));
  SBX_TRY(router.Add(
      Method::kPost, "/v1/runs/{id}:apply", Access::kReviewer, [c](const Request& req) -> Reply {
        // Optional body: {"diff_sha256": "…"}, the diff.patch the reviewer read.
        auto fields = OptionalStringFields(req, {"diff_sha256"});
        if (!fields.ok()) return Fail(fields.error());
        // Applied by the node that ran it, into the directory of its host.
        if (auto run = c.store->GetRun(req.PathParam("id")); run.ok()) {
          if (auto there = ForwardToOwner(c, req, *run)) return std::move(*there);
        }
        supervisor::Review::ApplyInput in;
        in.diff_sha256 = (*fields)["diff_sha256"];
        auto r = c.runs->ApplyChanges(req.PathParam("id"), ToPrincipal(*c.config, req), in);
        if (!r.ok()) return Fail(r.error());
        const auto& report = r->report;
        if (!report.conflicts.empty()) {
          nlohmann::json conflicts = nlohmann::json::array();
          for (const auto& x : report.conflicts) {
            conflicts.push_back({{"path", x.path}, {"why", x.why}});
          }
          nlohmann::json body;
          body["error"]["code"] = "conflict";
          body["error"]["message"] = fmt::format(
              "{} of the run's changes conflict with the host directory as it is now; nothing "
              "was written (first: {}: {})",
              report.conflicts.size(), report.conflicts[0].path, report.conflicts[0].why);
          body["conflicts"] = std::move(conflicts);
          return JsonResponse(409, body);
        }
        return JsonResponse(200, {{"run_id", r->run.id},
                                  {"diff_sha256", r->diff_sha256},
                                  {"changes_sha256", r->changes_sha256},
                                  {"files_written", report.files_written},
                                  {"files_deleted", report.files_deleted},
                                  {"dirs_made", report.dirs_made},
                                  {"dirs_removed", report.dirs_removed}});
      }));
  return Ok();
}

}  // namespace sbx::api
