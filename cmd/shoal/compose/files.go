package compose

// The files a compose file names. compose-go reads them with os.ReadFile
// and os.Open, so `env_file: /dev/zero`, a FIFO or a 10 GiB file would hang
// the CLI or fill its memory, and it has no hook for those reads: its
// ResourceLoaders are asked for include and extends paths only, without
// the directory a relative path is relative to, and a loader that accepts
// local paths stops compose-go resolving them. So every file is bounded
// here before compose-go sees it:
//
//   - service env_file: compose-go is told not to read them
//     (SkipResolveEnvironment) and resolveEnvFiles reads them after loading,
//     as compose-go does, through readBounded;
//   - the .env beside the first file: read by Load through readBounded;
//   - include: paths and env_file (or the included project's .env), and
//     extends: file: precheckFiles walks them before loading (each model
//     parsed by compose-go itself, includes and extends left out, then
//     followed here with compose-go's rules for their directories and
//     environment), reading each through readBounded and bounding the
//     nesting (maxFileDepth) and the number of files (maxReferencedFiles).
//
// label_file, reported as an ignored key, is not read at all.
//
// compose-go reads the include and extends files again once they have
// passed; a file replaced in between by someone who can write the
// directory is not guarded against (they could edit the compose file).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

const (
	// MaxReferencedFile bounds each file a compose file names: env_file,
	// include and extends files and the .env beside the first file.
	MaxReferencedFile = 1 << 20
	// maxFileDepth bounds how deep include and extends files nest.
	maxFileDepth = 10
	// maxReferencedFiles bounds how many include and extends files one
	// deploy reads (each distinct file and environment once).
	maxReferencedFiles = 100
)

// errNotRegular and errTooLarge are why readBounded refuses a file.
var (
	errNotRegular = errors.New("not a regular file")
	errTooLarge   = fmt.Errorf("larger than %d bytes", MaxReferencedFile)
)

// readBounded reads the regular file path, at most MaxReferencedFile bytes.
func readBounded(path string) ([]byte, error) {
	data, err := ReadRegular(path, MaxReferencedFile+1)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxReferencedFile {
		return nil, errTooLarge
	}
	return data, nil
}

// ReadRegular reads at most limit bytes of the regular file path: a file a
// compose file names may be anything its author chose. A FIFO, device,
// socket or directory is refused before it is opened (an open of a FIFO
// blocks until a writer comes), and the open itself does not block
// (O_NONBLOCK) should path have become one meanwhile.
func ReadRegular(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errNotRegular
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errNotRegular
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// fileProblem is the error for file (named by key, in the compose file
// from) that cannot be read.
func fileProblem(key, from string, top []types.ConfigFile, file string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		err = os.ErrNotExist
	} else if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	if from != "" && !slices.ContainsFunc(top, func(f types.ConfigFile) bool { return f.Filename == from }) {
		return &keyError{Path: key, Err: fmt.Errorf("%s (named in %s): %w", file, from, err)}
	}
	return &keyError{Path: key, Err: fmt.Errorf("%s: %w", file, err)}
}

// precheck is one walk of precheckFiles.
type precheck struct {
	top   []types.ConfigFile
	seen  map[[32]byte]bool
	files int
}

// precheckFiles reads, bounded, every include and extends file (and
// include env file) the compose files of details name, following them as
// compose-go will. Problems are *keyError; a file compose-go cannot parse
// is left for the load to report.
func precheckFiles(ctx context.Context, details types.ConfigDetails) error {
	pc := &precheck{top: details.ConfigFiles, seen: map[[32]byte]bool{}}
	for _, f := range details.ConfigFiles {
		if err := pc.walk(ctx, f, details.WorkingDir, details.Environment, 0, false); err != nil {
			return err
		}
	}
	return nil
}

// walk checks the files file names. workingDir is what its relative paths
// are relative to; extendsOnly is for an extends file, whose include:
// compose-go ignores.
func (pc *precheck) walk(ctx context.Context, file types.ConfigFile, workingDir string, env types.Mapping, depth int, extendsOnly bool) error {
	if err := fileTargetClash(file, env); err != nil {
		return err
	}
	model, err := loader.LoadModelWithContext(ctx, types.ConfigDetails{
		WorkingDir: workingDir, ConfigFiles: []types.ConfigFile{file}, Environment: env,
	}, func(o *loader.Options) {
		o.SkipInclude, o.SkipExtends, o.SkipValidation = true, true, true
		o.SkipNormalization, o.SkipConsistencyCheck, o.ResolvePaths = true, true, false
		o.SetProjectName("precheck", true)
	})
	if err != nil {
		return nil // the load reports it, at the same step
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(workingDir, p)
	}
	// follow reads path (named by key) and walks it.
	follow := func(key, path, dir string, env types.Mapping, extendsOnly bool) error {
		id := sha256.New()
		fmt.Fprintf(id, "%q %q %v\n", path, dir, extendsOnly)
		for _, k := range slices.Sorted(maps.Keys(env)) {
			fmt.Fprintf(id, "%q=%q\n", k, env[k])
		}
		var sum [32]byte
		copy(sum[:], id.Sum(nil))
		if pc.seen[sum] {
			return nil // a diamond, or a cycle compose-go reports
		}
		pc.seen[sum] = true
		if depth+1 > maxFileDepth {
			return fileProblem(key, file.Filename, pc.top, path, fmt.Errorf("include and extends nest more than %d files deep", maxFileDepth))
		}
		if pc.files++; pc.files > maxReferencedFiles {
			return fileProblem(key, file.Filename, pc.top, path, fmt.Errorf("more than %d include and extends files", maxReferencedFiles))
		}
		data, err := readBounded(path)
		if err != nil {
			return fileProblem(key, file.Filename, pc.top, path, err)
		}
		return pc.walk(ctx, types.ConfigFile{Filename: path, Content: data}, dir, env, depth+1, extendsOnly)
	}

	for _, kind := range []string{"services", "jobs"} {
		services, _ := model[kind].(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(services)) {
			svc, _ := services[name].(map[string]any)
			ext, _ := svc["extends"].(map[string]any)
			f, ok := ext["file"].(string)
			if !ok {
				continue
			}
			path := abs(f)
			if err := follow(kind+"."+name+".extends.file", path, filepath.Dir(path), env, true); err != nil {
				return err
			}
		}
	}
	if extendsOnly {
		return nil
	}
	includes, _ := model["include"].([]any)
	for i, inc := range includes {
		key := fmt.Sprintf("include[%d]", i)
		var paths, envFiles []string
		var projectDir string
		switch v := inc.(type) {
		case string:
			paths = []string{v}
		case map[string]any:
			paths, envFiles = stringList(v["path"]), stringList(v["env_file"])
			projectDir, _ = v["project_directory"].(string)
		}
		if len(paths) == 0 {
			continue
		}
		for j := range paths {
			paths[j] = abs(paths[j])
		}
		switch {
		case projectDir == "":
			projectDir = filepath.Dir(paths[0])
		default:
			projectDir = abs(projectDir)
		}
		// The included files' environment, as compose-go's ApplyInclude
		// makes it: the env files, else the project directory's .env.
		if len(envFiles) == 0 {
			if st, err := os.Stat(filepath.Join(projectDir, ".env")); err == nil && !st.IsDir() {
				envFiles = []string{filepath.Join(projectDir, ".env")}
			}
		}
		fromFiles := map[string]string{}
		for _, ef := range envFiles {
			if ef == "/dev/null" {
				continue
			}
			ef = abs(ef)
			data, err := readBounded(ef)
			if err != nil {
				return fileProblem(key+".env_file", file.Filename, pc.top, ef, err)
			}
			vars, err := dotenv.ParseWithLookup(bytes.NewReader(data), func(k string) (string, bool) {
				if v, ok := env[k]; ok {
					return v, true
				}
				v, ok := fromFiles[k]
				return v, ok
			})
			if err != nil {
				return nil // the load reports it
			}
			maps.Copy(fromFiles, vars)
		}
		incEnv := env.Clone().Merge(fromFiles)
		for _, p := range paths {
			if err := follow(key+".path", p, projectDir, incEnv, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// stringList is a compose string-or-list value.
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, s := range v {
			if s, ok := s.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// resolveEnvFiles does for the services of p what compose-go's
// WithServicesEnvironmentResolved does, reading each env_file through
// readBounded: values without a value are looked up in the project
// environment, then the env files are read in order and the service's
// environment: overrides them.
func resolveEnvFiles(p *types.Project) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		s.Environment = s.Environment.Resolve(p.Environment.Resolve)
		environment := s.Environment.ToMapping()
		for i, ef := range s.EnvFiles {
			key := fmt.Sprintf("services.%s.env_file[%d]", name, i)
			data, err := readBounded(ef.Path)
			if errors.Is(err, os.ErrNotExist) && !bool(ef.Required) {
				continue
			}
			if err != nil {
				errs = append(errs, fileProblem(key, "", nil, ef.Path, err))
				continue
			}
			err = dotenv.ParseWithFormat(bytes.NewReader(data), ef.Path, environment, func(k string) (string, bool) {
				if v, ok := p.Environment.Resolve(k); ok {
					return v, true // the project's environment first
				}
				if v, ok := s.Environment[k]; ok && v != nil {
					return *v, true
				}
				return "", false
			}, ef.Format)
			if err != nil {
				errs = append(errs, &keyError{Path: key, Err: fmt.Errorf("%s: %w", ef.Path, err)})
			}
		}
		s.Environment = environment.ToMappingWithEquals().OverrideBy(s.Environment)
		p.Services[name] = s
	}
	return errors.Join(errs...)
}
