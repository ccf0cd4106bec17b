// Filling a job's parameters into its argv, and the job as the API shows it. Parsing jobs.yaml
// is jobs_yaml.cc's.
#include "supervisor/policy/jobs.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "base/utf8.h"

namespace sbx::policy {

using nlohmann::json;

namespace {

Error ParamError(const std::string& name, const std::string& what) {
  return MakeError(ErrorCode::kInvalidArgument, "params.{}: {}", name, what);
}

// The value of `p` as it goes into the argv, from what the caller gave (or its default).
Result<std::string> ValueOf(const JobParam& p, const json* given) {
  if (given == nullptr) {
    if (p.default_value) return *p.default_value;
    return ParamError(p.name, "missing; this job needs it");
  }
  switch (p.type) {
    case JobParam::Type::kString: {
      if (!given->is_string()) return ParamError(p.name, "must be a string");
      const std::string v = given->get<std::string>();
      if (v.find('\0') != std::string::npos) return ParamError(p.name, "must not contain NUL");
      if (v.size() > p.max_length) {
        return ParamError(p.name, fmt::format("{} bytes; at most {}", v.size(), p.max_length));
      }
      if (!IsValidUtf8(v)) return ParamError(p.name, "must be UTF-8");
      if (!p.allow_leading_dash && !v.empty() && v.front() == '-') {
        return ParamError(p.name, "must not start with '-' (it would read as an option)");
      }
      if (!std::regex_match(v, *p.compiled)) {
        return ParamError(p.name, fmt::format("'{}' does not match the pattern {}", v, p.pattern));
      }
      return v;
    }
    case JobParam::Type::kInteger: {
      int64_t v = 0;
      if (given->is_number_integer()) {
        v = given->get<int64_t>();
      } else if (given->is_string()) {
        const std::string s = given->get<std::string>();
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
          return ParamError(p.name, "must be an integer");
        }
      } else {
        return ParamError(p.name, "must be an integer");
      }
      if (v < p.min || v > p.max) {
        return ParamError(p.name, fmt::format("{} is outside {}..{}", v, p.min, p.max));
      }
      return std::to_string(v);
    }
    case JobParam::Type::kEnum: {
      if (!given->is_string() || std::find(p.values.begin(), p.values.end(),
                                           given->get<std::string>()) == p.values.end()) {
        std::string list;
        for (const auto& v : p.values) list += (list.empty() ? "" : ", ") + v;
        return ParamError(p.name, fmt::format("must be one of {}", list));
      }
      return given->get<std::string>();
    }
  }
  return ParamError(p.name, "has an unknown type");
}

}  // namespace

bool MayStart(const Job& job, std::string_view key_name) {
  return std::any_of(job.keys.begin(), job.keys.end(),
                     [&](const std::string& k) { return k == "*" || k == key_name; });
}

const Job* JobSet::Find(std::string_view name) const {
  for (const Job& j : jobs_) {
    if (j.name == name) return &j;
  }
  return nullptr;
}

std::shared_ptr<const JobSet> JobSet::Empty() {
  static const auto empty = std::make_shared<const JobSet>();
  return empty;
}

Result<std::vector<std::string>> InstantiateJob(const Job& job, const json& params) {
  if (!params.is_null() && !params.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "params: must be an object");
  }
  if (params.is_object()) {
    for (auto it = params.begin(); it != params.end(); ++it) {
      const bool known = std::any_of(job.params.begin(), job.params.end(),
                                     [&](const JobParam& p) { return p.name == it.key(); });
      if (!known) {
        std::string names;
        for (const auto& p : job.params) names += (names.empty() ? "" : ", ") + p.name;
        return ParamError(it.key(), fmt::format("job {} has no such parameter ({})", job.name,
                                                names.empty() ? "it takes none" : names));
      }
    }
  }
  std::map<std::string, std::string> values;
  for (const JobParam& p : job.params) {
    const json* given = nullptr;
    if (params.is_object()) {
      if (auto it = params.find(p.name); it != params.end() && !it->is_null()) given = &*it;
    }
    auto v = ValueOf(p, given);
    if (!v.ok()) return std::move(v).error();
    values[p.name] = std::move(*v);
  }
  std::vector<std::string> argv;
  for (const std::string& arg : job.argv) {
    std::string out;
    for (size_t i = 0; i < arg.size(); ++i) {
      if (arg.compare(i, 2, "{{") == 0 || arg.compare(i, 2, "}}") == 0) {
        out += arg[i];
        ++i;
      } else if (arg[i] == '{') {
        const size_t end = arg.find('}', i);
        out += values.at(arg.substr(i + 1, end - i - 1));  // checked when the file was loaded
        i = end;
      } else {
        out += arg[i];
      }
    }
    argv.push_back(std::move(out));
  }
  return argv;
}

json JobToJson(const Job& job, const std::string& source) {
  json properties = json::object();
  json required = json::array();
  for (const JobParam& p : job.params) {
    json s;
    switch (p.type) {
      case JobParam::Type::kString:
        s = {{"type", "string"},
             {"pattern", "^(?:" + p.pattern + ")$"},
             {"maxLength", p.max_length}};
        break;
      case JobParam::Type::kInteger:
        s = {{"type", "integer"}, {"minimum", p.min}, {"maximum", p.max}};
        break;
      case JobParam::Type::kEnum:
        s = {{"type", "string"}, {"enum", p.values}};
        break;
    }
    if (!p.description.empty()) s["description"] = p.description;
    if (p.default_value) {
      s["default"] = p.type == JobParam::Type::kInteger ? json(std::stoll(*p.default_value))
                                                        : json(*p.default_value);
    } else {
      required.push_back(p.name);
    }
    properties[p.name] = std::move(s);
  }
  json limits = json::object();
  if (job.cpus) limits["cpus"] = *job.cpus;
  if (job.memory_bytes) limits["memory_bytes"] = *job.memory_bytes;
  if (job.pids) limits["pids"] = *job.pids;
  if (job.output_bytes) limits["output_bytes"] = *job.output_bytes;
  if (job.timeout_s) limits["timeout_s"] = *job.timeout_s;
  return {{"name", job.name},
          {"description", job.description},
          {"argv", job.argv},
          {"params",
           {{"type", "object"},
            {"additionalProperties", false},
            {"properties", std::move(properties)},
            {"required", std::move(required)}}},
          {"limits", std::move(limits)},
          {"workspace", job.workspace_path.empty()
                            ? json(nullptr)
                            : json{{"path", job.workspace_path}, {"mode", job.workspace_mode}}},
          {"project", job.project.empty() ? json(nullptr) : json(job.project)},
          {"review", job.review},
          {"keys", job.keys},
          {"source", fmt::format("{}:{}", source, job.line)}};
}

}  // namespace sbx::policy
