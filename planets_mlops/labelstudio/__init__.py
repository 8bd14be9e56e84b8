"""The Label Studio loop: import human labels into a versioned data set, push predictions back.

Modules:
    labels       pure rules: parse an export into records, decide one label per task,
                 resolve duplicates and conflicts by content hash (no I/O, no SDK)
    merge        write accepted images into a copy of a class-per-folder data set
    client       thin wrapper over label-studio-sdk (get-or-create project, upload,
                 annotations, predictions, export, image download) with clear errors
    predictions  run the current model over unlabelled tasks and write predictions
    importer     the import step end to end (export -> rules -> merge -> publish)
    (a local Label Studio server: planets_mlops.app.dev.labelstudio_server)
    demo         the quickstart's labelling demo
"""
