#include "supervisor/sandbox/snapshots.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/dir.h"
#include "base/fs.h"
#include "supervisor/files/tar.h"
#include "supervisor/store/sandbox_records.h"

namespace sbx::supervisor {
namespace {

// "/tmp" -> "tmp.tar".
std::string TarName(const std::string& dir) {
  std::string n = dir.substr(1);
  std::replace(n.begin(), n.end(), '/', '_');
  return n + ".tar";
}

Result<SnapshotRecord> FromJson(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return MakeError(ErrorCode::kInternal, "a snapshot's meta.json does not parse");
  }
  SnapshotRecord r;
  try {
    r.id = j.at("id").get<std::string>();
    r.name = j.at("name").get<std::string>();
    r.owner = j.at("owner").get<std::string>();
    r.source_sandbox = j.value("source_sandbox", "");
    r.created_at_ms = j.value("created_at", int64_t{0});
    r.bytes = j.value("bytes", uint64_t{0});
    r.dirs = j.value("dirs", std::vector<std::string>{});
    r.skipped = j.value("skipped", std::vector<std::string>{});
  } catch (const nlohmann::json::exception& e) {
    return MakeError(ErrorCode::kInternal, "a snapshot's meta.json: {}", e.what());
  }
  return r;
}

}  // namespace

Status Snapshots::CheckName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name == "." || name == ".." ||
      !std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      })) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "snapshot name '{}': 1 to 64 letters, digits, '.', '_' or '-'", name);
  }
  return Ok();
}

Result<std::vector<SnapshotRecord>> Snapshots::List(const std::string& owner) const {
  std::vector<SnapshotRecord> out;
  UniqueFd d(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d) {
    if (errno == ENOENT) return out;
    return ErrnoError("open {}", dir_);
  }
  auto names = ListDirNames(d.get(), 100000);
  if (!names.ok()) return std::move(names).error();
  for (const std::string& id : *names) {
    if (id.rfind("snap_", 0) != 0) continue;
    auto text = ReadFile(dir_ + "/" + id + "/meta.json");
    if (!text.ok()) continue;  // being written, or half removed
    auto r = FromJson(*text);
    if (!r.ok()) continue;
    if (!owner.empty() && r->owner != owner) continue;
    out.push_back(std::move(*r));
  }
  std::sort(out.begin(), out.end(), [](const SnapshotRecord& a, const SnapshotRecord& b) {
    return a.created_at_ms > b.created_at_ms;
  });
  return out;
}

Result<SnapshotRecord> Snapshots::Find(std::string_view name_or_id,
                                       const std::string& owner) const {
  auto all = List(owner);
  if (!all.ok()) return std::move(all).error();
  for (auto& r : *all) {
    if (r.id == name_or_id || r.name == name_or_id) return std::move(r);
  }
  return MakeError(ErrorCode::kNotFound, "snapshot {} not found", name_or_id);
}

Result<SnapshotRecord> Snapshots::Save(const files::SandboxRoot& root, std::string_view name,
                                       const std::string& owner, const std::string& sandbox_id,
                                       const std::vector<std::string>& dirs) {
  SBX_TRY(CheckName(name));
  if (Find(name, owner).ok()) {
    return MakeError(ErrorCode::kAlreadyExists, "snapshot '{}' exists; delete it or pick another "
                                                "name",
                     name);
  }
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError("mkdir {}", dir_);
  SnapshotRecord r;
  r.id = "snap_" + store::NewSandboxId().substr(4);
  r.name = std::string(name);
  r.owner = owner;
  r.source_sandbox = sandbox_id;
  r.created_at_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  const std::string path = dir_ + "/" + r.id;
  if (::mkdir(path.c_str(), 0700) != 0) return ErrnoError("mkdir {}", path);
  auto fail = [&](Error e) -> Result<SnapshotRecord> {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    return e;
  };
  for (const std::string& d : dirs) {
    const std::string file = path + "/" + TarName(d);
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return fail(ErrnoError("create {}", file));
    const int raw = fd.get();
    auto stats = files::WriteTar(root, d, [raw](std::string_view data) -> Status {
      return WriteAll(raw, data);
    });
    if (!stats.ok()) {
      return fail(WithContext(std::move(stats).error(), fmt::format("snapshot of {}", d)));
    }
    if (::fsync(raw) != 0) return fail(ErrnoError("fsync {}", file));
    r.bytes += stats->bytes;
    for (auto& s : stats->skipped) r.skipped.push_back(d + "/" + s);
    r.dirs.push_back(d);
  }
  nlohmann::json meta = {{"id", r.id},          {"name", r.name},
                         {"owner", r.owner},    {"source_sandbox", r.source_sandbox},
                         {"created_at", r.created_at_ms}, {"bytes", r.bytes},
                         {"dirs", r.dirs},      {"skipped", r.skipped}};
  // Written last and renamed into place: a snapshot without meta.json does not exist.
  {
    UniqueFd m(::open((path + "/meta.json.tmp").c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!m) return fail(ErrnoError("create {}/meta.json.tmp", path));
    if (Status st = WriteAll(m.get(), meta.dump()); !st.ok()) return fail(std::move(st).error());
    if (::fsync(m.get()) != 0) return fail(ErrnoError("fsync {}/meta.json.tmp", path));
  }
  if (::rename((path + "/meta.json.tmp").c_str(), (path + "/meta.json").c_str()) != 0) {
    return fail(ErrnoError("rename {}/meta.json", path));
  }
  return r;
}

Result<std::vector<std::string>> Snapshots::Restore(const SnapshotRecord& snapshot,
                                                    const files::SandboxRoot& root,
                                                    const std::vector<std::string>& only) const {
  std::vector<std::string> restored;
  for (const std::string& d : snapshot.dirs) {
    if (!only.empty() && std::find(only.begin(), only.end(), d) == only.end()) continue;
    const std::string file = dir_ + "/" + snapshot.id + "/" + TarName(d);
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return ErrnoError("open {}", file);
    const int raw = fd.get();
    auto stats = files::ExtractTar(root, d, [raw](char* buf, size_t n) -> Result<size_t> {
      for (;;) {
        ssize_t got = ::read(raw, buf, n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return ErrnoError("reading the snapshot");
        return static_cast<size_t>(got);
      }
    });
    if (!stats.ok()) {
      return WithContext(std::move(stats).error(), fmt::format("restoring {}", d));
    }
    restored.push_back(d);
  }
  return restored;
}

Status Snapshots::Delete(const SnapshotRecord& snapshot) const {
  const std::string path = dir_ + "/" + snapshot.id;
  // meta.json first: from then on the snapshot does not exist, whatever is left of its tars.
  if (::unlink((path + "/meta.json").c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("unlink {}/meta.json", path);
  }
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return MakeError(ErrorCode::kInternal, "removing {}: {}", path, ec.message());
  return Ok();
}

}  // namespace sbx::supervisor
