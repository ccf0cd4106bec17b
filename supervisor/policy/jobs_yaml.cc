// jobs.yaml into a JobSet. A file with anything malformed is refused whole, naming the line;
// yaml-cpp's and std::regex's exceptions stop here.
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "base/utf8.h"
#include "supervisor/policy/jobs.h"
#include "supervisor/policy/yaml_util.h"

namespace sbx::policy {

using internal::At;
using internal::CheckKeys;
using internal::LineOf;

namespace {

constexpr size_t kMaxJobsBytes = 1 << 20;
constexpr size_t kMaxJobs = 1000;
constexpr size_t kMaxArgv = 256;

bool IsName(const std::string& s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    (i > 0 && (c == '-' || c == '_' || c == '.'));
    if (!ok) return false;
  }
  return true;
}

bool IsParamName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// The slots of one argument, checked: "{name}" with a declared name; "{{" and "}}" literal.
Status CheckSlots(const std::string& arg, const std::set<std::string>& declared,
                  std::set<std::string>* used, const std::string& source, int line) {
  for (size_t i = 0; i < arg.size(); ++i) {
    if (arg.compare(i, 2, "{{") == 0 || arg.compare(i, 2, "}}") == 0) {
      ++i;
      continue;
    }
    if (arg[i] == '}') {
      return At(source, line,
                fmt::format("argument \"{}\": a lone '}}'; write }}}} for a brace", arg));
    }
    if (arg[i] != '{') continue;
    const size_t end = arg.find('}', i);
    if (end == std::string::npos) {
      return At(source, line,
                fmt::format("argument \"{}\": '{{' without '}}'; write {{{{ for a "
                            "brace",
                            arg));
    }
    const std::string name = arg.substr(i + 1, end - i - 1);
    if (!declared.count(name)) {
      return At(source, line,
                fmt::format("argument \"{}\" names {{{}}}, which is not one of the job's params",
                            arg, name));
    }
    used->insert(name);
    i = end;
  }
  return Ok();
}

std::string Scalar(const YAML::Node& n) { return n.IsScalar() ? n.Scalar() : std::string(); }

Result<JobParam> ParseParam(const std::string& name, const YAML::Node& key, const YAML::Node& n,
                            const std::string& source, const std::string& where) {
  JobParam p;
  p.name = name;
  if (!IsParamName(name)) {
    return At(source, key,
              fmt::format("param '{}' {}: a name of letters, digits and _", name, where));
  }
  if (!n.IsMap()) {
    return At(source, key, fmt::format("param '{}' {} must be a map with a type", name, where));
  }
  const std::string here = fmt::format("in param '{}' {}", name, where);
  SBX_TRY(CheckKeys(n,
                    {"type", "description", "pattern", "max_length", "allow_leading_dash", "min",
                     "max", "values", "default"},
                    source, here));
  const std::string type = Scalar(n["type"]);
  if (type == "string") {
    p.type = JobParam::Type::kString;
    if (!n["pattern"] || Scalar(n["pattern"]).empty()) {
      return At(source, key,
                fmt::format("param '{}' {}: a string needs a pattern (its whole "
                            "value must match)",
                            name, where));
    }
    p.pattern = Scalar(n["pattern"]);
    try {
      p.compiled = std::make_shared<const std::regex>(p.pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return At(source, n["pattern"],
                fmt::format("param '{}' {}: the pattern is not a regular expression: {}", name,
                            where, e.what()));
    }
    if (n["max_length"]) {
      auto v = internal::ParsePositiveInt(n["max_length"], source, "max_length", here, "64");
      if (!v.ok()) return std::move(v).error();
      if (*v > 4096) return At(source, n["max_length"], "max_length is at most 4096");
      p.max_length = static_cast<size_t>(*v);
    }
    if (n["allow_leading_dash"]) {
      const std::string v = Scalar(n["allow_leading_dash"]);
      if (v != "true" && v != "false") {
        return At(source, n["allow_leading_dash"], "allow_leading_dash must be true or false");
      }
      p.allow_leading_dash = v == "true";
    }
  } else if (type == "integer") {
    p.type = JobParam::Type::kInteger;
    auto bound = [&](const char* k, int64_t* out) -> Status {
      if (!n[k]) return Ok();
      const std::string s = Scalar(n[k]);
      auto digits = internal::ParseDigits(s.starts_with("-") ? s.substr(1) : s);
      if (!digits) return At(source, n[k], fmt::format("'{}' {} must be an integer", k, here));
      *out = s.starts_with("-") ? -*digits : *digits;
      return Ok();
    };
    p.min = INT64_MIN;
    SBX_TRY(bound("min", &p.min));
    SBX_TRY(bound("max", &p.max));
    if (p.min > p.max) return At(source, key, fmt::format("min is above max {}", here));
  } else if (type == "enum") {
    p.type = JobParam::Type::kEnum;
    if (!n["values"] || !n["values"].IsSequence() || n["values"].size() == 0) {
      return At(source, key, fmt::format("an enum needs a list of values {}", here));
    }
    for (const auto& v : n["values"]) {
      if (!v.IsScalar() || v.Scalar().empty()) {
        return At(source, v, fmt::format("enum values {} are non-empty strings", here));
      }
      p.values.push_back(v.Scalar());
    }
  } else {
    return At(source, n["type"] ? n["type"] : key,
              fmt::format("param '{}' {}: type must be string, integer or enum", name, where));
  }
  if (n["description"]) p.description = Scalar(n["description"]);
  if (n["default"]) {
    // The default goes through the same checks as a caller's value.
    JobParam check = p;
    const std::string d = Scalar(n["default"]);
    nlohmann::json given = p.type == JobParam::Type::kInteger
                               ? nlohmann::json::parse(d, nullptr, false)
                               : nlohmann::json(d);
    Job probe;
    probe.name = "default";
    probe.params = {check};
    auto v = InstantiateJob(probe, nlohmann::json{{name, given}});
    if (!v.ok()) {
      return At(source, n["default"],
                fmt::format("the default of param '{}' {} is not a valid value: {}", name, where,
                            v.error().message));
    }
    p.default_value = p.type == JobParam::Type::kInteger ? std::to_string(given.get<int64_t>()) : d;
  }
  return p;
}

Result<Job> ParseJob(const YAML::Node& key, const YAML::Node& n, const std::string& source) {
  Job job;
  job.name = Scalar(key);
  job.line = LineOf(key);
  if (!IsName(job.name, 64)) {
    return At(source, key, fmt::format("job name '{}': [a-z0-9][a-z0-9_.-]{{0,63}}", job.name));
  }
  const std::string where = fmt::format("in job '{}'", job.name);
  if (!n.IsMap()) return At(source, key, fmt::format("job '{}' must be a map", job.name));
  SBX_TRY(CheckKeys(n,
                    {"description", "argv", "params", "timeout_s", "limits", "workspace", "project",
                     "keys", "review"},
                    source, where));
  if (n["description"]) job.description = Scalar(n["description"]);
  const YAML::Node argv = n["argv"];
  if (!argv || !argv.IsSequence() || argv.size() == 0 || argv.size() > kMaxArgv) {
    return At(source, argv ? argv : key,
              fmt::format("argv {} must be a list of 1 to {} strings", where, kMaxArgv));
  }
  for (const auto& a : argv) {
    if (!a.IsScalar() || a.Scalar().empty() || a.Scalar().find('\0') != std::string::npos) {
      return At(source, a, fmt::format("argv {}: each argument a non-empty string", where));
    }
    job.argv.push_back(a.Scalar());
  }
  std::set<std::string> declared;
  if (const YAML::Node params = n["params"]) {
    if (!params.IsMap()) return At(source, params, fmt::format("params {} must be a map", where));
    for (const auto& kv : params) {
      auto p = ParseParam(Scalar(kv.first), kv.first, kv.second, source, where);
      if (!p.ok()) return std::move(p).error();
      declared.insert(p->name);
      job.params.push_back(std::move(*p));
    }
  }
  std::set<std::string> used;
  for (const std::string& a : job.argv)
    SBX_TRY(CheckSlots(a, declared, &used, source, LineOf(argv)));
  if (job.argv[0].find('{') != std::string::npos) {
    return At(source, argv, fmt::format("argv[0] {} is the program: it takes no slot", where));
  }
  for (const std::string& d : declared) {
    if (!used.count(d)) {
      return At(source, n["params"],
                fmt::format("param '{}' {} is declared but no argument uses it", d, where));
    }
  }
  if (n["timeout_s"]) {
    auto v = internal::ParsePositiveInt(n["timeout_s"], source, "timeout_s", where, "600");
    if (!v.ok()) return std::move(v).error();
    job.timeout_s = *v;
  }
  if (const YAML::Node l = n["limits"]) {
    if (!l.IsMap()) return At(source, l, fmt::format("limits {} must be a map", where));
    const std::string lw = "in the limits of job '" + job.name + "'";
    SBX_TRY(CheckKeys(l, {"cpus", "memory", "pids", "output_bytes"}, source, lw));
    if (l["cpus"]) {
      auto v = internal::ParseCpus(l["cpus"], source, "cpus", lw);
      if (!v.ok()) return std::move(v).error();
      job.cpus = *v;
    }
    if (l["memory"]) {
      auto v = internal::ParseSize(l["memory"], source, "memory", lw);
      if (!v.ok()) return std::move(v).error();
      job.memory_bytes = *v;
    }
    if (l["output_bytes"]) {
      auto v = internal::ParseSize(l["output_bytes"], source, "output_bytes", lw);
      if (!v.ok()) return std::move(v).error();
      job.output_bytes = *v;
    }
    if (l["pids"]) {
      auto v = internal::ParsePositiveInt(l["pids"], source, "pids", lw, "256");
      if (!v.ok()) return std::move(v).error();
      job.pids = *v;
    }
  }
  if (const YAML::Node w = n["workspace"]) {
    if (!w.IsMap() || !w["path"] || Scalar(w["path"]).empty() || Scalar(w["path"])[0] != '/') {
      return At(source, w, fmt::format("workspace {} is {{path: /abs/dir, mode: ro|cow}}", where));
    }
    SBX_TRY(CheckKeys(w, {"path", "mode"}, source, "in the workspace " + where));
    job.workspace_path = Scalar(w["path"]);
    if (w["mode"]) job.workspace_mode = Scalar(w["mode"]);
    if (job.workspace_mode != "ro" && job.workspace_mode != "cow") {
      return At(source, w["mode"], fmt::format("workspace mode {} is ro or cow", where));
    }
  }
  if (n["project"]) {
    job.project = Scalar(n["project"]);
    if (job.project.empty()) return At(source, n["project"], "project names a project");
    if (!job.workspace_path.empty()) {
      return At(
          source, n["project"],
          fmt::format("{}: a project brings its own workspace; give project or workspace", where));
    }
  }
  const YAML::Node keys = n["keys"];
  if (!keys || !keys.IsSequence() || keys.size() == 0) {
    return At(
        source, keys ? keys : key,
        fmt::format("keys {} lists the API keys that may start it (\"*\": every key)", where));
  }
  for (const auto& k : keys) {
    if (!k.IsScalar() || k.Scalar().empty()) {
      return At(source, k, fmt::format("keys {}: API key names", where));
    }
    job.keys.push_back(k.Scalar());
  }
  if (n["review"]) {
    const std::string v = Scalar(n["review"]);
    if (v != "true" && v != "false") {
      return At(source, n["review"], fmt::format("review {} must be true or false", where));
    }
    job.review = v == "true";
  }
  return job;
}

}  // namespace

Result<std::shared_ptr<const JobSet>> JobSet::Parse(std::string_view text,
                                                    const std::string& source) {
  if (text.size() > kMaxJobsBytes) {
    return At(source, 0,
              fmt::format("{} bytes; a jobs file holds at most {}", text.size(), kMaxJobsBytes));
  }
  // Every string of a job goes out as JSON (GET /v1/jobs) and into argvs: text only.
  if (const size_t bad = FirstInvalidUtf8(text); bad != text.size()) {
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + bad, '\n'));
    return At(source, line, fmt::format("byte {} is not UTF-8; a jobs file is UTF-8 text", bad));
  }
  auto doc = internal::LoadOneDocument(text, source, "a jobs file");
  if (!doc.ok()) return std::move(doc).error();
  auto set = std::make_shared<JobSet>();
  set->source_ = source;
  if (!doc->IsDefined() || doc->IsNull()) return std::shared_ptr<const JobSet>(set);
  try {
    if (!doc->IsMap()) return At(source, *doc, "a jobs file is a map with a 'jobs' key");
    SBX_TRY(CheckKeys(*doc, {"jobs"}, source, "at the top level"));
    const YAML::Node jobs = (*doc)["jobs"];
    if (!jobs || jobs.IsNull()) return std::shared_ptr<const JobSet>(set);
    if (!jobs.IsMap()) return At(source, jobs, "'jobs' is a map of job names to jobs");
    std::set<std::string> seen;
    for (const auto& kv : jobs) {
      if (set->jobs_.size() >= kMaxJobs) return At(source, kv.first, "more than 1000 jobs");
      auto job = ParseJob(kv.first, kv.second, source);
      if (!job.ok()) return std::move(job).error();
      if (!seen.insert(job->name).second) {
        return At(source, kv.first, fmt::format("job '{}' is defined twice", job->name));
      }
      set->jobs_.push_back(std::move(*job));
    }
  } catch (const YAML::Exception& e) {
    return At(source, e.mark.line >= 0 ? e.mark.line + 1 : 0,
              fmt::format("cannot be read: {}", e.msg));
  } catch (const std::exception& e) {
    return At(source, 0, fmt::format("cannot be read: {}", e.what()));
  }
  return std::shared_ptr<const JobSet>(set);
}

Result<std::shared_ptr<const JobSet>> JobSet::LoadDir(const std::string& dir) {
  const std::string path = dir + "/jobs.yaml";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return MakeError(ErrorCode::kNotFound, "no {}", path);
    return ErrnoError("open {}", path);
  }
  std::string text;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxJobsBytes) break;
  }
  return Parse(text, path);
}

}  // namespace sbx::policy
