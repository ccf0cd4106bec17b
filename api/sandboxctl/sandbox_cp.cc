// `sandboxctl sandbox cp`: a file into a sandbox (PUT …/files) or out of it (GET …/files), and
// with -r a directory as a tar stream (PUT and GET …/files:tar), byte for byte.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "api/sandboxctl/local_tar.h"
#include "api/sandboxctl/sandbox_args.h"
#include "api/sandboxctl/sandbox_commands.h"
#include "base/unique_fd.h"

namespace sbx::ctl {
namespace {

std::string FilesTarget(const std::string& id, const std::string& what, const std::string& path) {
  return SandboxTarget(id) + "/" + what + "?path=" + PercentEncode(path);
}

// What is at `path` in the sandbox: its files:stat answer, or nullopt when nothing is there.
Result<std::optional<nlohmann::json>> RemoteStat(Context& ctx, const std::string& id,
                                                 const std::string& path) {
  auto st = ctx.client->CallJson("GET", FilesTarget(id, "files:stat", path));
  if (st.ok()) return std::optional<nlohmann::json>(std::move(*st));
  if (st.error().code != ErrorCode::kNotFound) return std::move(st).error();
  // No such path, or no such sandbox: the sandbox's own answer tells them apart.
  auto sandbox = ctx.client->CallJson("GET", SandboxTarget(id));
  if (!sandbox.ok()) return std::move(sandbox).error();
  return std::optional<nlohmann::json>();
}

bool IsDir(const std::optional<nlohmann::json>& stat) {
  if (!stat) return false;
  const std::string type = Str(*stat, "type");
  return type == "directory" || type == "dir";
}

// The permission bits of a files:stat answer (a number, or an octal string such as "0644").
std::optional<mode_t> RemoteMode(const nlohmann::json& stat) {
  if (!stat.contains("mode")) return std::nullopt;
  const auto& m = stat["mode"];
  if (m.is_number_integer()) return static_cast<mode_t>(m.get<int64_t>() & 0777);
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 8);
    if (!s.empty() && *end == '\0' && v >= 0) return static_cast<mode_t>(v & 0777);
  }
  return std::nullopt;
}

Status CheckReply(const Result<HttpReply>& reply) {
  if (!reply.ok()) return reply.error();
  if (reply->status < 200 || reply->status > 299) return ApiError(*reply);
  return Ok();
}

void PrintCopied(Context& ctx, const std::string& from, const std::string& to, uint64_t bytes,
                 uint64_t entries) {
  if (ctx.json) {
    PrintJson({{"from", from}, {"to", to}, {"bytes", bytes}, {"entries", entries}});
  } else {
    (void)WriteOut(
        1, fmt::format("{} -> {} ({})\n", from, to, FormatBytes(static_cast<int64_t>(bytes))));
  }
}

void WarnSkipped(const std::vector<std::string>& skipped) {
  for (const auto& s : skipped) (void)WriteOut(2, "sandboxctl: left out " + s + "\n");
}

int Upload(Context& ctx, const std::string& local, const std::string& id, const std::string& rpath,
           bool recursive) {
  auto remote = RemoteStat(ctx, id, rpath);
  if (!remote.ok()) return ReportError(ctx, remote.error());
  const std::string shown_to = id + ":";
  if (local == "-") {
    if (IsDir(*remote)) {
      return ReportUsage(
          ctx, fmt::format("{}{} is a directory; name the file to write", shown_to, rpath));
    }
    uint64_t bytes = 0;
    auto reply =
        ctx.client->Upload("PUT", FilesTarget(id, "files", rpath), "application/octet-stream",
                           std::nullopt, [&](const BodySink& write) -> Status {
                             char buf[65536];
                             for (;;) {
                               ssize_t n = ::read(0, buf, sizeof buf);
                               if (n < 0 && errno == EINTR) continue;
                               if (n < 0) return ErrnoError("cannot read standard input");
                               if (n == 0) return Ok();
                               bytes += static_cast<uint64_t>(n);
                               SBX_TRY(write(std::string_view(buf, static_cast<size_t>(n))));
                             }
                           });
    Status st = CheckReply(reply);
    if (!st.ok()) return ReportError(ctx, st.error());
    PrintCopied(ctx, "-", shown_to + rpath, bytes, 1);
    return 0;
  }
  // The operand itself is followed (as cp(1) does); nothing below it is.
  UniqueFd fd(::open(local.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return ReportError(ctx, ErrnoError("cannot open {}", local));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ReportError(ctx, ErrnoError("cannot stat {}", local));
  const std::string name = BaseName(local);
  if (S_ISDIR(st.st_mode)) {
    if (!recursive) return ReportUsage(ctx, local + " is a directory; copy it with -r");
    if (*remote && !IsDir(*remote)) {
      return ReportUsage(ctx, fmt::format("{}{} exists and is not a directory", shown_to, rpath));
    }
    // Into an existing directory as its own name, like cp -r; else as the named directory.
    const std::string dest = *remote && !name.empty() ? JoinPath(rpath, name) : rpath;
    auto made = ctx.client->Call("POST", FilesTarget(id, "files:mkdir", dest));
    Status ok = CheckReply(made);
    if (!ok.ok()) return ReportError(ctx, ok.error());
    LocalTarStats stats;
    auto reply = ctx.client->Upload("PUT", FilesTarget(id, "files:tar", dest), "application/x-tar",
                                    std::nullopt, [&](const BodySink& write) -> Status {
                                      auto written = WriteLocalTar(fd.get(), write);
                                      if (!written.ok()) return std::move(written).error();
                                      stats = std::move(*written);
                                      return Ok();
                                    });
    ok = CheckReply(reply);
    if (!ok.ok()) return ReportError(ctx, ok.error());
    WarnSkipped(stats.skipped);
    PrintCopied(ctx, local, shown_to + dest, stats.bytes, stats.entries);
    return 0;
  }
  if (!S_ISREG(st.st_mode)) {
    return ReportUsage(ctx, local + " is not a regular file or a directory");
  }
  const std::string dest = IsDir(*remote) ? JoinPath(rpath, name) : rpath;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  auto reply = ctx.client->Upload(
      "PUT", FilesTarget(id, "files", dest) + fmt::format("&mode={:04o}", st.st_mode & 0777),
      "application/octet-stream", size, [&](const BodySink& write) -> Status {
        char buf[65536];
        uint64_t left = size;
        while (left > 0) {
          ssize_t n = ::read(fd.get(), buf, std::min<size_t>(sizeof buf, left));
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return ErrnoError("cannot read {}", local);
          if (n == 0) {
            return MakeError(ErrorCode::kInternal, "{} shrank while it was copied; copy it again",
                             local);
          }
          left -= static_cast<uint64_t>(n);
          SBX_TRY(write(std::string_view(buf, static_cast<size_t>(n))));
        }
        return Ok();
      });
  Status ok = CheckReply(reply);
  if (!ok.ok()) return ReportError(ctx, ok.error());
  PrintCopied(ctx, local, shown_to + dest, size, 1);
  return 0;
}

// A file created next to `path` and renamed over it once complete, so that an interrupted copy
// never leaves half a file under the name.
struct PendingFile {
  UniqueFd dir;
  UniqueFd fd;
  std::string tmp;
  std::string name;
};

Result<PendingFile> CreatePending(const std::string& path, mode_t mode) {
  PendingFile p;
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  p.name = path.substr(slash == std::string::npos ? 0 : slash + 1);
  p.dir.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!p.dir) return ErrnoError("cannot open directory {}", dir);
  p.tmp = fmt::format(".{}.sandboxctl-{}", p.name, ::getpid());
  p.fd.reset(::openat(p.dir.get(), p.tmp.c_str(),
                      O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!p.fd) return ErrnoError("cannot create a file in {}", dir);
  return p;
}

int Download(Context& ctx, const std::string& id, const std::string& rpath,
             const std::string& local, bool recursive) {
  auto remote = RemoteStat(ctx, id, rpath);
  if (!remote.ok()) return ReportError(ctx, remote.error());
  const std::string shown_from = id + ":" + rpath;
  if (!*remote) {
    return ReportError(
        ctx, MakeError(ErrorCode::kNotFound, "{}: no such file or directory", shown_from));
  }
  const bool dir = IsDir(*remote);
  if (dir && !recursive) return ReportUsage(ctx, shown_from + " is a directory; copy it with -r");
  const std::string target = FilesTarget(id, dir ? "files:tar" : "files", rpath);
  uint64_t bytes = 0;
  if (local == "-") {
    // A file's bytes, or a directory's tar stream, to our stdout.
    auto st = ctx.client->Stream(target, [&](std::string_view piece) -> Status {
      bytes += piece.size();
      return WriteOut(1, piece);
    });
    if (!st.ok()) return ReportError(ctx, st.error());
    return 0;
  }
  struct stat lst {};
  const bool local_dir = ::stat(local.c_str(), &lst) == 0 && S_ISDIR(lst.st_mode);
  const std::string name = BaseName(rpath);
  const std::string dest = local_dir && !name.empty() ? JoinPath(local, name) : local;
  if (!dir) {
    auto pending = CreatePending(dest, RemoteMode(**remote).value_or(0644));
    if (!pending.ok()) return ReportError(ctx, pending.error());
    auto st = ctx.client->Stream(target, [&](std::string_view piece) -> Status {
      bytes += piece.size();
      return WriteOut(pending->fd.get(), piece);
    });
    Status done = st.ok() ? Ok() : Status(st.error());
    if (done.ok() && ::renameat(pending->dir.get(), pending->tmp.c_str(), pending->dir.get(),
                                pending->name.c_str()) != 0) {
      done = ErrnoError("cannot rename the download to {}", dest);
    }
    if (!done.ok()) {
      ::unlinkat(pending->dir.get(), pending->tmp.c_str(), 0);
      return ReportError(ctx, done.error());
    }
    PrintCopied(ctx, shown_from, dest, bytes, 1);
    return 0;
  }
  // A directory: the archive lands in an unnamed file first and is checked whole before
  // anything is extracted (local_tar.h).
  const char* tmpdir = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") +
                     "/sandboxctl-tar-XXXXXX";
  UniqueFd archive(::mkostemp(tmpl.data(), O_CLOEXEC));
  if (!archive) return ReportError(ctx, ErrnoError("cannot create a temporary file {}", tmpl));
  ::unlink(tmpl.c_str());
  auto st = ctx.client->Stream(target, [&](std::string_view piece) -> Status {
    bytes += piece.size();
    return WriteOut(archive.get(), piece);
  });
  if (!st.ok()) return ReportError(ctx, st.error());
  if (::mkdir(dest.c_str(), 0755) != 0 && errno != EEXIST) {
    return ReportError(ctx, ErrnoError("cannot make directory {}", dest));
  }
  UniqueFd into(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!into) return ReportError(ctx, ErrnoError("cannot open directory {}", dest));
  auto stats = ExtractLocalTar(archive.get(), into.get());
  if (!stats.ok()) return ReportError(ctx, stats.error());
  WarnSkipped(stats->skipped);
  PrintCopied(ctx, shown_from, dest, stats->bytes, stats->entries);
  return 0;
}

}  // namespace

int CmdSandboxCp(Context& ctx, const ParsedArgs& args) {
  if (args.positional.size() != 2) {
    return ReportUsage(ctx, "needs a source and a destination, one of them ID:PATH");
  }
  auto from = ParseCpOperand(args.positional[0]);
  if (!from.ok()) return ReportUsage(ctx, from.error().message);
  auto to = ParseCpOperand(args.positional[1]);
  if (!to.ok()) return ReportUsage(ctx, to.error().message);
  if (from->remote == to->remote) {
    return ReportUsage(ctx, from->remote ? "both operands are in sandboxes; copy through a "
                                           "local file"
                                         : "one operand must be ID:PATH, a path in a sandbox");
  }
  const bool recursive = args.Has("recursive");
  if (to->remote) return Upload(ctx, from->path, to->sandbox_id, to->path, recursive);
  return Download(ctx, from->sandbox_id, from->path, to->path, recursive);
}

}  // namespace sbx::ctl
